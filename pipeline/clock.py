"""Time units and the wall clock, declared once.

Everything meterline stores or compares in time is UTC: epoch milliseconds for event timestamps, epoch
seconds for ClickHouse ``DateTime('UTC')`` values. Tests replace the clock by passing their own callable
wherever a component takes ``clock_ms``.
"""

from __future__ import annotations

import time

MINUTE_MS = 60_000
# The storage grain: every UTC offset in use since 1972 is a whole number of quarter hours, so local days,
# weeks and months are exact sets of 15-minute windows (schemas/migrations/0004_*.sql).
WINDOW_S = 15 * 60
WINDOW_MS = WINDOW_S * 1000
WINDOWS_PER_HOUR = 4
HOUR_S = 3600
HOUR_MS = HOUR_S * 1000
DAY_S = 24 * HOUR_S
DAY_MS = DAY_S * 1000


def now_ms() -> int:
    """The wall clock in epoch milliseconds (UTC)."""
    return time.time_ns() // 1_000_000
