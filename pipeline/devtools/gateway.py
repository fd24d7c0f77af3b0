"""A synthetic API gateway for the quick start: realistic traffic for a handful of keys and models.

Keys differ in size and in their models; traffic follows a daily rhythm; a few requests are retried (same
request_id), a few are malformed, a few arrive late. ``backfill`` writes the last days at once so that
charts and spike baselines have history; ``run`` then sends live traffic, including one visible spike.

History is random, not a replay: sending it twice would add a second set of requests, not repeat the first
(and the quick start's embedded broker gives each run a new topic, where request_ids are deduplicated per
partition). So ``backfill`` skips every key x hour the store already holds: a second run fills only the
hours that are missing, and no number ever doubles.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Collection

import msgspec

from pipeline.clock import HOUR_MS, now_ms

# (api_key_id, org_id, project_id, relative size, models with their weights)
KEYS = (
    ("key_acme_prod", "org_acme", "proj_support_bot", 900, (("gpt-4o-mini", "openai", 6), ("gpt-4o", "openai", 2),
                                                           ("acme-private-llm", "acme", 1))),
    ("key_acme_dev", "org_acme", "proj_support_bot", 60, (("gpt-4o-mini", "openai", 1),)),
    ("key_globex_chat", "org_globex", "proj_chat", 400, (("claude-sonnet-4-5", "anthropic", 3),
                                                          ("claude-3-5-haiku-latest", "anthropic", 5))),
    ("key_initech_batch", "org_initech", "proj_reports", 250, (("gemini-2.5-flash", "google", 4),
                                                              ("gemini-2.5-pro", "google", 1))),
    ("key_hooli_search", "org_hooli", "proj_search", 150, (("gpt-4.1-mini", "openai", 2), ("o4-mini", "openai", 1))),
)
SPIKE_KEY = "key_globex_chat"
_TOTAL_WEIGHT = sum(key[3] for key in KEYS)

Send = Callable[[str, bytes], Awaitable[None]]  # (api_key_id, message value)


@dataclass
class GatewayStats:
    events: int = 0
    retries: int = 0
    malformed: int = 0
    history_hours: int = 0  # hours the backfill covers
    history_hours_sent: int = 0
    history_skipped: int = 0  # key x hours left out because the store already had them
    history_done: bool = False


class SyntheticGateway:
    def __init__(self, send: Send, events_per_s: float, seed: int = 42,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self._send = send
        self._events_per_s = events_per_s
        self._rng = random.Random(seed)
        self._clock_ms = clock_ms
        self._run_id = f"{seed:x}{clock_ms():x}"
        self._sequence = 0
        self._recent: dict[str, list[dict]] = {key[0]: [] for key in KEYS}
        self.stats = GatewayStats()

    async def backfill(self, days: float, stored: Collection[tuple[str, int]] = ()) -> None:
        """Batch messages for each key and hour of the last ``days`` (until the current hour), except the
        (api_key_id, hour since the epoch) pairs in ``stored``. Progress is in :attr:`stats`."""
        now = self._clock_ms()
        first_hour, end_hour = history_hours(days, now)
        self.stats.history_hours = end_hour - first_hour
        for hour in range(first_hour, end_hour):
            for key in KEYS:
                if (key[0], hour) in stored:
                    self.stats.history_skipped += 1
                    continue
                count = self._hourly_requests(key, hour)
                start = hour * HOUR_MS
                events = [self._event(key, start + self._rng.randrange(HOUR_MS)) for _ in range(count)]
                await self._send_batches(key[0], events)
            self.stats.history_hours_sent += 1
        self.stats.history_done = True

    async def run(self, spike_after_s: float, spike_seconds: float, spike_factor: float,
                  stop: asyncio.Event) -> None:
        """Live traffic until ``stop``; ``SPIKE_KEY`` sends ``spike_factor`` times its rate for a while."""
        started = time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - started
            spiking = spike_after_s <= elapsed < spike_after_s + spike_seconds
            hour = self._clock_ms() // HOUR_MS
            for key in KEYS:
                rate = self._per_second(key, hour)
                if spiking and key[0] == SPIKE_KEY:
                    rate *= spike_factor
                count = _poisson(self._rng, rate)
                now = self._clock_ms()
                events = [self._maybe_retry(key[0]) or self._event(key, now) for _ in range(count)]
                await self._send_batches(key[0], events)
            if self._rng.random() < 0.05:
                await self._send_malformed()
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass

    def _hourly_requests(self, key: tuple, hour: int) -> int:
        return max(0, round(self._per_second(key, hour) * 3600 * self._rng.uniform(0.85, 1.15)))

    def _per_second(self, key: tuple, hour: int) -> float:
        """The key's share of the gateway's rate, following a daily rhythm (busy from 06:00 to 22:00 UTC)."""
        hour_of_day = hour % 24
        rhythm = 0.3 + 0.7 * math.sin(math.pi * (hour_of_day - 6) / 16) ** 2 if 6 <= hour_of_day < 22 else 0.3
        return self._events_per_s * key[3] / _TOTAL_WEIGHT * rhythm

    def _event(self, key: tuple, ts_ms: int) -> dict:
        api_key_id, org_id, project_id, _, models = key
        model, provider, _ = self._rng.choices(models, weights=[m[2] for m in models])[0]
        input_tokens = int(self._rng.lognormvariate(6.5, 0.9))
        output_tokens = int(self._rng.lognormvariate(5.2, 0.8))
        self._sequence += 1
        event = {
            "request_id": f"req_{self._run_id}_{self._sequence}", "api_key_id": api_key_id, "model": model,
            "provider": provider, "timestamp": ts_ms, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_read_tokens": input_tokens // 3 if self._rng.random() < 0.4 else 0,
            "reasoning_tokens": output_tokens // 2 if model.startswith("o") else 0,
            "org_id": org_id, "project_id": project_id,
            "status": "error" if self._rng.random() < 0.02 else "ok",
            "latency_ms": self._rng.randint(200, 9000),
        }
        self._add_units(event)
        self._recent[api_key_id] = (self._recent[api_key_id] + [event])[-50:]
        self.stats.events += 1
        return event

    def _add_units(self, event: dict) -> None:
        """Some units beyond the five token fields, as the providers report them (docs/pricing.md): Anthropic
        cache writes of both lifetimes and web searches, Gemini image input and thinking."""
        if self._rng.random() >= 0.3:
            return
        input_tokens, cache_read = event["input_tokens"], event["cache_read_tokens"]
        if event["provider"] == "anthropic":
            write = (input_tokens - cache_read) // 2
            event["cache_write_tokens"] = write
            event["usage"] = {"cache_write_1h_tokens": write // 3, "web_searches": self._rng.randint(0, 2)}
        elif event["provider"] == "google":
            event["usage"] = {"input_image_tokens": min(258, input_tokens - cache_read)}
            event["reasoning_tokens"] = event["output_tokens"] // 3

    def _maybe_retry(self, api_key_id: str) -> dict | None:
        recent = self._recent[api_key_id]
        if recent and self._rng.random() < 0.01:
            self.stats.retries += 1
            return self._rng.choice(recent)
        return None

    async def _send_batches(self, api_key_id: str, events: list[dict], size: int = 500) -> None:
        for start in range(0, len(events), size):
            await self._send(api_key_id, msgspec.json.encode(events[start:start + size]))

    async def _send_malformed(self) -> None:
        self.stats.malformed += 1
        key = KEYS[0][0]
        await self._send(key, msgspec.json.encode({"request_id": f"bad_{self._sequence}", "api_key_id": key,
                                                  "model": "gpt-4o-mini", "timestamp": self._clock_ms(),
                                                  "input_tokens": -1, "output_tokens": 3}))


def history_hours(days: float, now_ms: int) -> tuple[int, int]:
    """The hours (since the epoch, UTC) a backfill of ``days`` covers at ``now_ms``: [first, end)."""
    return (now_ms - int(days * 24 * HOUR_MS)) // HOUR_MS, now_ms // HOUR_MS


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth for small means, normal approximation above)."""
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
