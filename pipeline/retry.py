"""The one retry loop: exponential backoff around an async call, for every place that waits out a failure
(ClickHouse writes, dead-letter sends, alert deliveries).

What is worth retrying, how often and for how long differs per caller, so those are arguments; the loop,
its doubling delays and its bookkeeping exist once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``initial_s``, doubling up to ``max_s`` (seconds)."""

    initial_s: float = 0.2
    max_s: float = 10.0

    def after(self, delay_s: float) -> float:
        return min(delay_s * 2, self.max_s)


def always(error: Exception) -> bool:
    return True


async def retry(call: Callable[[], Awaitable[T]], backoff: Backoff, *,
                retryable: Callable[[Exception], bool] = always, attempts: int | None = None,
                deadline: float | None = None,
                on_failure: Callable[[Exception, int, float], None] | None = None) -> T:
    """``await call()`` until it returns; its result.

    A failure is retried when ``retryable(error)`` holds, at most ``attempts`` calls in all (None: without
    limit) and not past ``deadline`` (``time.monotonic()`` seconds; None: none). ``on_failure(error, attempt,
    delay_s)`` is told of every failure that will be retried. Raises the last error otherwise.
    """
    delay = backoff.initial_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as error:
            out_of_time = deadline is not None and time.monotonic() + delay >= deadline
            if not retryable(error) or attempt == attempts or out_of_time:
                raise
            if on_failure is not None:
                on_failure(error, attempt, delay)
        await asyncio.sleep(delay)
        delay = backoff.after(delay)
