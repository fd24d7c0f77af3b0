"""Test-only crash injection at the moments that matter for exactly-once.

``METERLINE_FAILPOINTS="after_rollup_insert=0.3,after_dedup_keys=0.1"`` makes the worker (or the alert runner)
kill itself with SIGKILL at that point with that probability. Empty (the default) costs one dict lookup per point.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = (
    "after_dead_letters",  # DLQ records acknowledged, nothing written to ClickHouse yet
    "after_dedup_keys",  # request ids written, rollups not yet
    "before_rollup_insert",  # progress checked, insert not sent
    "after_rollup_insert",  # rollups + progress committed in ClickHouse, Kafka offsets not committed
    "after_ack",  # a flush took its messages (each acked to Faust, whose commit may run ahead); none written
    "budget_after_claim",  # a budget notification claimed in ClickHouse, not yet sent (the alert runner)
    "budget_after_send",  # a budget notification accepted by its channel, not yet recorded as sent
)


class Failpoints:
    def __init__(self, spec: str = "", rng: random.Random | None = None) -> None:
        self._chance = _parse(spec)
        self._rng = rng or random.Random()

    def hit(self, point: str) -> None:
        chance = self._chance.get(point)
        if chance is not None and self._rng.random() < chance:
            os.kill(os.getpid(), signal.SIGKILL)


def _parse(spec: str) -> dict[str, float]:
    chances = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"METERLINE_FAILPOINTS: unknown point {name!r}; known: {', '.join(POINTS)}")
        chance = float(value or 1)
        if not 0 <= chance <= 1:
            raise ValueError(f"METERLINE_FAILPOINTS: chance for {name} must be within 0..1, got {value}")
        chances[name] = chance
    return chances
