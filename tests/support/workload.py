"""Synthetic gateway traffic with a ground-truth ledger computed independently of meterline's code.

Events carry every family of usage unit genai-prices prices (audio, image and video tokens, cache reads and
writes of both lifetimes and their per-modality overlaps, reasoning and citation tokens, web and storage
searches, per-request fees, characters, document pages, text messages, seconds of audio: some priced per
second at prices that do not terminate, rounded per event) and service tiers.

The ledger prices every event with genai-prices' own ``calc_price`` at the event's timestamp (every unit
given explicitly, the service tier as genai-prices' price context; rounded half-even to 1e-24 USD, a no-op
unless a per-second price does not terminate), applies
"first occurrence in the partition's log wins" for duplicate request ids, and knows which messages must be
dead-lettered and why. It is built from where each message really landed (partition, offset), so it
follows Kafka's order, not the generator's.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from aiokafka import AIOKafkaProducer

from pipeline.measures import REMAINDERS, costs_by_unit
from pipeline.units import IMPLICIT, TOP_LEVEL, decomposition
from support.units import genai_price

HOUR_MS = 3_600_000
MODELS = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic"),
          ("gemini-2.5-pro", "google"), ("acme-private-llm", "acme")]  # the last has no public price
# Models with units beyond the five token fields: (model, provider, the units its events report, tiers)
UNIT_MODELS = [
    ("claude-sonnet-4-5", "anthropic", {"cache_write_5m_tokens", "cache_write_1h_tokens", "web_searches"},
     ("", "batch")),
    ("gemini-2.5-flash", "google", {"input_audio_tokens", "cache_audio_read_tokens", "input_text_tokens",
                                    "output_text_tokens", "input_image_tokens", "input_video_tokens"}, ("", "flex")),
    ("gpt-4o-mini-realtime-preview", "openai", {"input_audio_tokens", "output_audio_tokens",
                                                "cache_audio_read_tokens", "cache_text_read_tokens"}, ("",)),
    ("gpt-image-1", "openai", {"input_image_tokens", "cache_image_read_tokens", "output_image_tokens",
                               "input_text_tokens"}, ("",)),
    ("gpt-5", "openai", {"storage_searches", "web_searches"}, ("", "flex", "priority", "batch")),
    ("whisper-large-v3", "groq", {"audio_seconds", "input_audio_seconds"}, ("",)),  # $0.111/h: rounded per event
    ("mistral-ocr-latest", "mistral", {"input_document_pages", "input_annotated_document_pages"}, ("",)),
    ("tts-1", "openai", {"input_characters"}, ("",)),
    ("sonar-deep-research", "perplexity", {"output_citation_tokens", "web_searches"}, ("",)),  # request fee too
    ("grok-voice-latest", "x-ai", {"input_text_messages", "audio_seconds"}, ("",)),
]


@dataclass
class Message:
    key: str
    value: bytes
    events: list[dict | None]  # one per event of the message; None where the event is malformed
    single: bool
    whole_message_reason: str | None = None  # set when the message as a whole is rejected
    event_reasons: list[str | None] = field(default_factory=list)  # per event, when the message is a batch


@dataclass
class Placed:
    message: Message
    partition: int
    offset: int


def event_for(rng: random.Random, key: str, index: int, now_ms: int, age_ms: int, tag: str) -> dict:
    if rng.random() < 0.35:
        return _unit_event(rng, key, index, now_ms, age_ms, tag)
    model, provider = rng.choice(MODELS)
    input_tokens = rng.choice([rng.randint(0, 4000), rng.randint(150_000, 250_000)])
    output_tokens = rng.randint(0, 3000)
    cache_read = rng.randint(0, input_tokens // 2)
    return {
        "request_id": f"{tag}-{key}-{index}", "api_key_id": key, "model": model, "provider": provider,
        "timestamp": now_ms - age_ms, "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cache_read_tokens": cache_read, "cache_write_tokens": rng.randint(0, (input_tokens - cache_read) // 4),
        "reasoning_tokens": rng.randint(0, output_tokens // 2), "status": rng.choice(["ok"] * 9 + ["error"]),
        "org_id": f"org-{key[-1]}",
    }


def _unit_event(rng: random.Random, key: str, index: int, now_ms: int, age_ms: int, tag: str) -> dict:
    """An event of a UNIT_MODELS model: consistent values for its units (each unit's value its own leaf plus
    its parts' leaves), some of them absent."""
    model, provider, units, tiers = rng.choice(UNIT_MODELS)
    chosen = {unit for unit in units if rng.random() < 0.8}
    plan = decomposition(frozenset(chosen) | {"input_tokens", "output_tokens"})
    leaves = [rng.choice([0, rng.randint(1, 40), rng.randint(40, 4000)]) for _ in plan.order]
    values = {name: leaves[i] + sum(leaves[j] for j in plan.parts_in[i]) for i, name in enumerate(plan.order)}
    if provider == "anthropic" and rng.random() < 0.2:  # past the >200k input tier
        values["input_tokens"] += 250_000
    field_of = {unit: field for field, unit in TOP_LEVEL.items()}
    event = {"request_id": f"{tag}-{key}-{index}", "api_key_id": key, "model": model, "provider": provider,
             "timestamp": now_ms - age_ms, "status": rng.choice(["ok"] * 9 + ["error"]), "org_id": f"org-{key[-1]}",
             **{field_of[name]: values.pop(name, 0) for name in list(field_of)}}
    usage = {name: value for name, value in values.items() if name != IMPLICIT and value}
    if usage:
        event["usage"] = usage
    if tier := rng.choice(tiers):
        event["service_tier"] = tier
    return event


def generate(n_events: int, now_ms: int, seed: int = 1, keys: int = 12, tag: str = "w") -> list[Message]:
    """About ``n_events`` events in single and batch messages, with every case the pipeline must handle."""
    rng = random.Random(seed)
    messages: list[Message] = []
    produced: dict[str, list[dict]] = defaultdict(list)
    index = 0
    while index < n_events:
        key = f"key-{rng.randrange(keys):02d}"
        kind = rng.random()
        if kind < 0.02:
            messages.append(_malformed(rng, key))
            continue
        size = 1 if kind < 0.5 else rng.randint(2, 40)
        events, reasons = [], []
        for _ in range(size):
            event, reason = _one_event(rng, key, index, now_ms, produced[key], tag)
            events.append(event)
            reasons.append(reason)
            index += 1
        if size == 1:
            messages.append(Message(key, json.dumps(events[0]).encode(), events, True, None, reasons))
        else:
            messages.append(Message(key, json.dumps(events).encode(), events, False, None, reasons))
    return messages


def _one_event(rng, key, index, now_ms, history, tag) -> tuple[dict, str | None]:
    roll = rng.random()
    if roll < 0.05 and history:  # a gateway retry: same request, same payload
        return dict(rng.choice(history)), None
    if roll < 0.07 and history:  # same request id, different payload: the first one counts
        changed = dict(rng.choice(history), input_tokens=rng.randint(1, 99), cache_read_tokens=0,
                       cache_write_tokens=0)
        changed.pop("usage", None)
        return changed, None
    if roll < 0.08:
        return event_for(rng, key, index, now_ms, 8 * 24 * HOUR_MS, tag), "too_late"
    if roll < 0.09:
        return event_for(rng, key, index, now_ms, -2 * HOUR_MS, tag), "future_timestamp"
    if roll < 0.11:
        event, reason = dict(event_for(rng, key, index, now_ms, 0, tag), input_tokens=-1), "invalid_field"
        return event, reason
    if roll < 0.14:  # late but within the bound: goes into its own, long-closed hour
        age = rng.randint(2 * 24 * HOUR_MS, 5 * 24 * HOUR_MS)
    else:
        age = rng.randint(0, 30 * HOUR_MS)
    event = event_for(rng, key, index, now_ms, age, tag)
    edge = rng.random()
    if edge < 0.03:  # exactly on an hour's first millisecond (:00:00.000) ...
        event["timestamp"] = event["timestamp"] // HOUR_MS * HOUR_MS
    elif edge < 0.06 and event["timestamp"] // HOUR_MS < now_ms // HOUR_MS:  # ... or its last (:59:59.999)
        event["timestamp"] = event["timestamp"] // HOUR_MS * HOUR_MS + HOUR_MS - 1
    if rng.random() < 0.03:  # a gateway that sends the raw secret; the secret of this key is fixed
        event.pop("api_key_id")
        event["api_key"] = secret_of(key)
    history.append(event)
    return event, None


def secret_of(key: str) -> str:
    return f"sk-live-{key}-SECRET"


def _malformed(rng: random.Random, key: str) -> Message:
    choice = rng.randrange(3)
    if choice == 0:
        return Message(key, b'{"request_id": "x", "api_key_id": "' + key.encode() + b'", "model"', [None], True,
                       "invalid_json")
    if choice == 1:
        return Message(key, json.dumps({"api_key_id": key, "model": "gpt-4o"}).encode(), [None], True,
                       "missing_field")
    return Message(key, b"[]", [], False, "empty_batch")


async def produce(bootstrap: str, topic: str, messages: list[Message]) -> list[Placed]:
    """Sends every message keyed by its api key (idempotent, acks=all), returning where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, m.value, key=m.key.encode()) for m in messages]
        placed = []
        for message, future in zip(messages, futures):
            meta = await future
            placed.append(Placed(message, meta.partition, meta.offset))
        return placed
    finally:
        await producer.stop()


@dataclass
class Ledger:
    usage: dict = field(default_factory=dict)  # (api_key_id, model, hour datetime) -> {column: value}
    outcomes: Counter = field(default_factory=Counter)  # (outcome, reason) -> events
    dead_letters: set = field(default_factory=set)  # (partition, offset, index or None, reason)
    last_offsets: dict = field(default_factory=dict)  # partition -> last offset produced


def ledger_of(placed: list[Placed]) -> Ledger:
    from pipeline.contract import hash_api_key

    ledger = Ledger()
    usage: dict = defaultdict(lambda: defaultdict(Decimal))
    seen: dict[int, set[str]] = defaultdict(set)
    for p in sorted(placed, key=lambda p: (p.partition, p.offset)):
        ledger.last_offsets[p.partition] = max(p.offset, ledger.last_offsets.get(p.partition, -1))
        m = p.message
        if m.whole_message_reason:
            ledger.dead_letters.add((p.partition, p.offset, None, m.whole_message_reason))
            ledger.outcomes[("rejected", m.whole_message_reason)] += 1
            continue
        for index, (event, reason) in enumerate(zip(m.events, m.event_reasons)):
            position = None if m.single else index
            if reason:
                ledger.dead_letters.add((p.partition, p.offset, position, reason))
                ledger.outcomes[("rejected", reason)] += 1
            elif event["request_id"] in seen[p.partition]:
                ledger.outcomes[("duplicate", "")] += 1
            else:
                seen[p.partition].add(event["request_id"])
                ledger.outcomes[("counted", "")] += 1
                key = event.get("api_key_id") or hash_api_key(event["api_key"])
                _add(usage[(key, event["model"], _hour(event["timestamp"]))], event)
    ledger.usage = {k: dict(v) for k, v in usage.items()}
    return ledger


def _hour(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms // HOUR_MS * 3600, UTC).replace(tzinfo=None)


def _add(row: dict, event: dict) -> None:
    row["requests"] += 1
    row["error_requests"] += event["status"] == "error"
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        row[name] += event.get(name, 0)
    units = row.setdefault("units", Counter())
    units.update(event.get("usage", {}))
    values = {"input_tokens": event["input_tokens"], "output_tokens": event["output_tokens"],
              "cache_read_tokens": event.get("cache_read_tokens", 0),
              "cache_write_tokens": event.get("cache_write_tokens", 0),
              "output_reasoning_tokens": event.get("reasoning_tokens", 0), **event.get("usage", {})}
    price = genai_price(values, event["model"], event["provider"], event["timestamp"], event.get("service_tier", ""))
    if price is None:
        row["unpriced_requests"] += 1
    else:
        row["total_cost"] += price[0]


COLUMNS = ("requests", "error_requests", "unpriced_requests", "input_tokens", "output_tokens",
           "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "total_cost")
USAGE_SQL = (
    "SELECT api_key_id, model, toString(hour), sum(requests), sum(error_requests), sum(unpriced_requests), "
    "sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), "
    "sum(reasoning_tokens), toString(sum(total_cost)), sumMap(units), sumMap(unit_costs), "
    "toString(sum(input_cost)), toString(sum(output_cost)) "
    "FROM usage_hourly GROUP BY api_key_id, model, hour"
)


def usage_from_rows(rows: list) -> dict:
    """usage_hourly rows of USAGE_SQL (as JSON values) -> {(key, model, hour): (counters..., cost, units)}.
    Checks on the way that every row's per-unit costs, as readers show them (the stored map without the two
    remainders, which are derived from the sides' costs), add up to its total cost exactly and are positive (a
    unit counted on the wrong side would leave a negative remainder)."""
    usage = {}
    for key, model, hour, *counts, cost, units, unit_costs, input_cost, output_cost in rows:
        stored = {name: Decimal(v) for name, v in unit_costs.items()}
        shown = costs_by_unit(stored, Decimal(input_cost), Decimal(output_cost))
        assert not stored.keys() & REMAINDERS and Decimal(input_cost) + Decimal(output_cost) == Decimal(cost)
        assert sum(shown.values()) == Decimal(cost) and all(v > 0 for v in shown.values()), (key, model, hour)
        usage[(key, model, datetime.fromisoformat(hour))] = (
            *map(int, counts), Decimal(cost), tuple(sorted((k, int(v)) for k, v in units.items() if int(v))))
    return usage


def canonical(usage: dict) -> dict:
    """Ledger rows in the shape of usage_from_rows."""
    return {key: (*(int(row.get(name, 0)) for name in COLUMNS[:-1]), Decimal(row.get("total_cost", 0)),
                  tuple(sorted((k, v) for k, v in row.get("units", {}).items() if v)))
            for key, row in usage.items()}
