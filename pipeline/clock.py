"""Time units and the wall clock, declared once.

Everything meterline stores or compares in time is UTC: epoch milliseconds for event timestamps, epoch
seconds for ClickHouse ``DateTime('UTC')`` values. Tests replace the clock by passing their own callable
wherever a component takes ``clock_ms``.
"""

from __future__ import annotations

import time

MINUTE_MS = 60_000
HOUR_S = 3600
HOUR_MS = HOUR_S * 1000
DAY_S = 24 * HOUR_S
DAY_MS = DAY_S * 1000


def now_ms() -> int:
    """The wall clock in epoch milliseconds (UTC)."""
    return time.time_ns() // 1_000_000
