"""The demo's synthetic gateway: a backfill leaves out the key x hours the store already holds (so a second
demo run never doubles them) and reports its progress."""

from __future__ import annotations

from collections import Counter

import msgspec

from pipeline.devtools.gateway import HOUR_MS, KEYS, SyntheticGateway, history_hours

NOW_MS = 1_900_000_000_000 + 1_234_567  # mid-hour


async def backfill(days: float, stored=()) -> tuple[SyntheticGateway, Counter]:
    sent: Counter = Counter()

    async def send(api_key_id: str, value: bytes) -> None:
        for event in msgspec.json.decode(value):
            assert event["api_key_id"] == api_key_id
            sent[(api_key_id, event["timestamp"] // HOUR_MS)] += 1

    gateway = SyntheticGateway(send, 0.5, clock_ms=lambda: NOW_MS)
    await gateway.backfill(days, stored)
    return gateway, sent


async def test_backfill_covers_every_key_and_hour_until_the_current_one():
    gateway, sent = await backfill(0.25)
    first, end = history_hours(0.25, NOW_MS)
    assert end == NOW_MS // HOUR_MS and end - first == 6
    assert set(sent) == {(key[0], hour) for key in KEYS for hour in range(first, end)}
    assert gateway.stats.history_done and gateway.stats.history_hours_sent == gateway.stats.history_hours == 6
    assert gateway.stats.events == sum(sent.values()) and gateway.stats.history_skipped == 0


async def test_backfill_skips_the_key_hours_already_stored():
    first, end = history_hours(0.25, NOW_MS)
    stored = {("key_acme_prod", first + 2), ("key_globex_chat", end - 1), ("key_unknown", first)}
    gateway, sent = await backfill(0.25, stored)
    assert not set(sent) & stored
    assert set(sent) == {(key[0], hour) for key in KEYS for hour in range(first, end)} - stored
    assert gateway.stats.history_skipped == 2
