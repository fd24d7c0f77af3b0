"""An in-memory flush store with the ClickHouse writer's semantics, for fast tests of the Meter's own logic.

It keeps what ``rollups`` and ``dedup_keys`` keep (usage sums per Dimensions, outcome counts, progress, request
ids tagged with their flush's last offset) and applies the same rules: the progress fence, the insert token
per (partition, first offset), ids trusted only up to the progress. What ClickHouse itself does (one part per
insert, parsing, merges) is tested against real ClickHouse in tests/integration/test_sink.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline.clock import WINDOW_MS
from pipeline.measures import Dimensions
from pipeline.metering.dedup import SeenRequests, request_id_hashes
from pipeline.metering.rollup import RequestKey, Rollup
from pipeline.metering.sink import NO_PROGRESS, FencedError, FlushRange


@dataclass
class StoredId:
    partition: int
    api_key_id: str
    request_id: str
    hour: int
    batch_end_offset: int


@dataclass
class MemoryStore:
    usage: dict[Dimensions, Counter] = field(default_factory=dict)  # measure name -> sum (costs in units)
    outcomes: Counter = field(default_factory=Counter)
    progress_of: dict[int, int] = field(default_factory=dict)
    ids: list[StoredId] = field(default_factory=list)
    tokens: set[tuple[int, int]] = field(default_factory=set)
    fresh_through: dict[int, int] = field(default_factory=dict)  # partition -> counted_through (epoch ms)
    commits: int = 0

    def progress(self, partition: int) -> int:
        return self.progress_of.get(partition, NO_PROGRESS)

    def load_seen(self, partition: int, progress: int, since_hour: int) -> SeenRequests:
        kept = [i for i in self.ids if i.partition == partition and i.batch_end_offset <= progress
                and i.hour >= since_hour]
        if not kept:
            return SeenRequests()
        return SeenRequests(request_id_hashes([i.request_id for i in kept]),
                            np.asarray([i.hour for i in kept], dtype=np.uint32))

    def confirm_seen(self, partition: int, progress: int, requests: list[RequestKey]) -> set[RequestKey]:
        stored = {(i.api_key_id, i.request_id) for i in self.ids
                  if i.partition == partition and i.batch_end_offset <= progress}
        return {r for r in requests if (r.api_key_id, r.request_id) in stored or ("", r.request_id) in stored}

    def encode(self, flush: FlushRange, rollup: Rollup) -> tuple[FlushRange, Rollup]:
        return flush, rollup

    def write_request_ids(self, encoded: tuple[FlushRange, Rollup]) -> None:
        flush, rollup = encoded
        self.ids += [StoredId(flush.partition, api_key_id, request_id, hour, flush.last_offset)
                     for (api_key_id, request_id), hour in zip(rollup.new_requests, rollup.new_request_hours)]

    def commit(self, flush: FlushRange, encoded: tuple[FlushRange, Rollup]) -> bool:
        found = self.progress(flush.partition)
        if found == flush.last_offset:
            return False
        if found != flush.expected_progress:
            raise FencedError(flush.partition, flush.expected_progress, found)
        token = (flush.partition, flush.first_offset)
        if token not in self.tokens:  # ClickHouse drops an insert whose token it has seen
            self.tokens.add(token)
            self._apply(flush, encoded[1])
        found = self.progress(flush.partition)
        if found != flush.last_offset:
            raise FencedError(flush.partition, flush.last_offset, found)
        return True

    def _apply(self, flush: FlushRange, rollup: Rollup) -> None:
        self.commits += 1
        for group, counts in rollup.groups.items():
            row = self.usage.setdefault(group, Counter())
            row.update(counts.as_dict())
            cost = rollup.costs.get(group)
            if cost is not None:
                row.update(input_cost=cost.input_units, output_cost=cost.output_units)
            if group in rollup.gateway_cost:
                row["gateway_cost"] += rollup.gateway_cost[group]
        self.outcomes.update(rollup.outcomes)
        self.progress_of[flush.partition] = max(self.progress(flush.partition), flush.last_offset)
        self.fresh_through[flush.partition] = max(self.fresh_through.get(flush.partition, 0),
                                                  flush.counted_through_ms)

    def record_freshness(self, partition: int, progress: int, counted_through_ms: int) -> bool:
        if self.progress(partition) != progress:
            return False
        self.fresh_through[partition] = max(self.fresh_through.get(partition, 0), counted_through_ms)
        return True

    def totals(self, **where: Any) -> Counter:
        """Sums over the groups whose dimensions match ``where`` (e.g. api_key_id="k", window=w)."""
        total: Counter = Counter()
        for group, row in self.usage.items():
            if all(getattr(group, name) == value for name, value in where.items()):
                total.update(row)
        return total


class InlineRunner:
    """Runs "blocking" calls directly: the in-memory store never blocks."""

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


def window_of(ts_ms: int) -> int:
    return ts_ms // WINDOW_MS
