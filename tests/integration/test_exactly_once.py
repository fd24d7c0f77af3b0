"""Exact numbers under real failures: a real Apache Kafka broker, real worker processes, real ClickHouse.

Every test compares usage_hourly with a ledger built independently from what was produced (see
tests/support/workload.py): equality, not closeness.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from pipeline.contract import hash_api_key
from support.dlq import dead_letters
from support.processes import ChdbHttpProcess, WorkerProcess, read_clickhouse, wait_until_counted
from support.workload import USAGE_SQL, Ledger, canonical, generate, ledger_of, produce, secret_of, \
    usage_from_rows

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

# Short sessions so a killed worker's partitions move on quickly (the broker's minimum is 6 s).
FAST_GROUP = {"METERLINE_KAFKA_SESSION_TIMEOUT": "6s"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def assert_matches_ledger(url: str, ledger: Ledger) -> None:
    assert usage_from_rows(read_clickhouse(url, USAGE_SQL)) == canonical(ledger.usage)
    outcomes = Counter({(outcome, reason): int(n) for outcome, reason, n in read_clickhouse(
        url, "SELECT outcome, reason, sum(events) FROM ingest_outcomes GROUP BY outcome, reason")})
    assert outcomes == +ledger.outcomes


async def test_end_to_end_usage_outcomes_and_dead_letters_equal_the_ledger(kafka_bootstrap, new_topic, tmp_path):
    topic = await new_topic(partitions=4)
    placed = await produce(kafka_bootstrap, topic, generate(6000, now_ms(), seed=1))
    ledger = ledger_of(placed)
    assert ledger.outcomes[("duplicate", "")] > 100 and len(ledger.dead_letters) > 100  # the workload is rich
    units = {unit for row in ledger.usage.values() for unit, count in row.get("units", {}).items() if count}
    assert units >= {"cache_write_5m_tokens", "cache_write_1h_tokens", "input_audio_tokens", "output_audio_tokens",
                     "cache_audio_read_tokens", "input_image_tokens", "output_image_tokens", "input_video_tokens",
                     "web_searches", "storage_searches", "audio_seconds", "input_document_pages",
                     "input_characters", "input_text_messages", "output_citation_tokens"}  # every unit family
    url = f"chdb://{tmp_path / 'clickhouse'}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}").start()
    try:
        wait_until_counted([worker], ledger.last_offsets, timeout=120)
        assert worker.metric("meterline_events_consumed_total") == sum(ledger.outcomes.values())
    finally:
        worker.stop()
    assert_matches_ledger(url, ledger)
    stored_keys = {row[0] for row in read_clickhouse(url, "SELECT DISTINCT api_key_id FROM usage_hourly")}
    assert hash_api_key(secret_of("key-01")) in stored_keys and not any("sk-live" in k for k in stored_keys)
    letters = await dead_letters(kafka_bootstrap, f"{topic}.dlq")
    assert Counter(l[:4] for l in letters) == Counter(ledger.dead_letters)  # each exactly once
    payloads = b"".join(letter.value for letter in letters)
    assert b"sk-live-" not in payloads  # secrets are hashed before anything is dead-lettered
    by_position = {(p.partition, p.offset): p.message for p in placed}
    for letter in letters:
        if letter.index is None:  # a whole message: its original bytes, unchanged
            assert letter.value == by_position[(letter.partition, letter.offset)].value, letter.reason


async def test_sigkill_at_any_moment_keeps_totals_exact(kafka_bootstrap, new_topic, tmp_path):
    """At least ten SIGKILLs of the worker, from outside at random moments and from failpoints placed
    between every pair of steps of a flush (incl. after the ClickHouse commit, before Kafka's)."""
    topic = await new_topic(partitions=4)
    url = f"chdb://{tmp_path / 'clickhouse'}"
    rng = random.Random(11)
    messages = generate(16000, now_ms(), seed=2)
    chunks = [messages[i::4] for i in range(4)]
    placed = []
    kills = failpoint_deaths = 0
    failpoints = ("after_dead_letters=0.1,after_dedup_keys=0.1,before_rollup_insert=0.05,"
                  "after_rollup_insert=0.15,after_ack=0.02")
    for chunk in chunks:
        placed += await produce(kafka_bootstrap, topic, chunk)
        for _ in range(3):
            # Long flush intervals leave Faust's own offset commits ahead of what ClickHouse holds:
            # exactly the state a restart must not trust.
            worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}",
                                   failpoints=failpoints, flush_interval=rng.choice(["0.1s", "2.5s"]),
                                   extra_env=FAST_GROUP).start()
            # Kill while it meters: a loaded machine may take seconds just to start a worker.
            await asyncio.to_thread(worker.wait_positioned, 90)
            await asyncio.sleep(rng.uniform(1.0, 6.0))
            if worker.alive:
                worker.kill()
            else:
                failpoint_deaths += 1
            kills += 1
    assert kills >= 10 and failpoint_deaths >= 1
    ledger = ledger_of(placed)
    final = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}",
                          extra_env=FAST_GROUP).start()
    try:
        wait_until_counted([final], ledger.last_offsets, timeout=180)
    finally:
        final.stop()
    assert_matches_ledger(url, ledger)
    # The dead-letter topic is at-least-once across crashes; every expected record is there.
    assert {l[:4] for l in await dead_letters(kafka_bootstrap, f"{topic}.dlq")} == ledger.dead_letters


async def test_two_workers_with_a_rebalance_in_the_middle(kafka_bootstrap, new_topic, tmp_path):
    """Worker B joins mid-stream, then worker A is killed: both share one ClickHouse over HTTP."""
    topic = await new_topic(partitions=6)
    server = ChdbHttpProcess(tmp_path / "shared-clickhouse").start()
    url = f"{server.url}/meterline"
    messages = generate(15000, now_ms(), seed=3, keys=30)
    thirds = [messages[i::3] for i in range(3)]
    env = dict(FAST_GROUP, METERLINE_TOPIC_PARTITIONS="6")
    a = WorkerProcess(tmp_path / "a", kafka_bootstrap, topic, url, group=f"g-{topic}", extra_env=env).start()
    b = WorkerProcess(tmp_path / "b", kafka_bootstrap, topic, url, group=f"g-{topic}", extra_env=env)
    try:
        placed = await produce(kafka_bootstrap, topic, thirds[0])
        await asyncio.sleep(4)
        b.start()
        placed += await produce(kafka_bootstrap, topic, thirds[1])
        await asyncio.sleep(6)
        a.kill()
        placed += await produce(kafka_bootstrap, topic, thirds[2])
        ledger = ledger_of(placed)
        wait_until_counted([b], ledger.last_offsets, timeout=180)
        assert len(b.status()["partitions"]) == 6  # B ended up owning everything
        assert_matches_ledger(url, ledger)
    finally:
        a.kill()
        b.stop()
        server.kill()


async def test_clickhouse_outage_is_waited_out_without_loss(kafka_bootstrap, new_topic, tmp_path):
    """ClickHouse goes away mid-stream: the worker retries with backoff, commits nothing past unwritten
    data, and catches up exactly once ClickHouse is back."""
    topic = await new_topic(partitions=4)
    folder = tmp_path / "clickhouse"
    server = ChdbHttpProcess(folder).start()
    url = f"{server.url}/meterline"
    messages = generate(8000, now_ms(), seed=4)
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}",
                           extra_env={"METERLINE_KAFKA_SESSION_TIMEOUT": "6s"}).start()
    try:
        half = len(messages) // 2
        placed = await produce(kafka_bootstrap, topic, messages[:half])
        wait_until_counted([worker], ledger_of(placed).last_offsets, timeout=120)
        server.kill()
        placed += await produce(kafka_bootstrap, topic, messages[half:])
        await asyncio.sleep(8)
        errors = worker.metric("meterline_clickhouse_errors_total")
        assert errors >= 2 and worker.alive, worker.log_tail(30)
        server = ChdbHttpProcess(folder, port=server.port).start()
        ledger = ledger_of(placed)
        wait_until_counted([worker], ledger.last_offsets, timeout=120)
        assert_matches_ledger(url, ledger)
    finally:
        worker.stop()
        server.kill()


async def test_an_empty_clickhouse_recounts_what_the_group_already_read(kafka_bootstrap, new_topic, tmp_path):
    """ClickHouse, not the consumer group's Kafka offsets, decides where counting resumes: a worker on a new,
    empty store re-reads the topic from its start even though the group has committed offsets at its end."""
    topic = await new_topic(partitions=2)
    ledger = ledger_of(await produce(kafka_bootstrap, topic, generate(1500, now_ms(), seed=6)))
    env = dict(FAST_GROUP, METERLINE_TOPIC_PARTITIONS="2")
    for store in ("first", "second"):
        url = f"chdb://{tmp_path / store}"
        worker = WorkerProcess(tmp_path / store, kafka_bootstrap, topic, url, group=f"g-{topic}", extra_env=env)
        try:
            wait_until_counted([worker.start()], ledger.last_offsets, timeout=90)
            await asyncio.sleep(4)  # let Faust commit the group's offsets at the end of the topic
        finally:
            worker.stop()
        assert_matches_ledger(url, ledger)
