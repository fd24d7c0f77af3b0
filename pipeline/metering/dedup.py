"""The in-memory filter of request ids already counted on one Kafka partition.

Ids are kept as 64-bit xxHash64 values with their event hour (12 bytes each instead of ~100 for a Python
string), in sorted numpy arrays. A miss is certain; a hit only means "maybe seen": the caller confirms hits
against ``dedup_keys`` in ClickHouse, which holds the real strings. ClickHouse's ``xxHash64(request_id)``
computes the same values, so the filter is rebuilt from ClickHouse without moving the strings.
"""

from __future__ import annotations

import numpy as np
import xxhash

_EMPTY_HASHES = np.empty(0, dtype=np.uint64)
_EMPTY_HOURS = np.empty(0, dtype=np.uint32)


def request_id_hashes(request_ids: list[str]) -> np.ndarray:
    digest = xxhash.xxh64_intdigest
    return np.fromiter((digest(r.encode()) for r in request_ids), dtype=np.uint64, count=len(request_ids))


class _SortedRun:
    """Hashes sorted ascending, with the event hour of each."""

    __slots__ = ("hashes", "hours")

    def __init__(self, hashes: np.ndarray, hours: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        self.hours = hours[order]

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self.hashes):
            return np.zeros(len(hashes), dtype=bool)
        where = np.searchsorted(self.hashes, hashes)
        where[where == len(self.hashes)] = 0
        return self.hashes[where] == hashes

    def keep(self, min_hour: int) -> "_SortedRun":
        alive = self.hours >= min_hour
        return _SortedRun(self.hashes[alive], self.hours[alive])


class SeenRequests:
    """Hashes of counted request ids for the dedup horizon, as two sorted runs (a large one and a small
    recent one) so that adding a flush's ids costs a sort of the small run, not of everything."""

    def __init__(self, hashes: np.ndarray = _EMPTY_HASHES, hours: np.ndarray = _EMPTY_HOURS) -> None:
        self._main = _SortedRun(hashes.astype(np.uint64, copy=False), hours.astype(np.uint32, copy=False))
        self._recent = _SortedRun(_EMPTY_HASHES, _EMPTY_HOURS)

    def __len__(self) -> int:
        return len(self._main) + len(self._recent)

    @property
    def nbytes(self) -> int:
        runs = (self._main, self._recent)
        return sum(run.hashes.nbytes + run.hours.nbytes for run in runs)

    def maybe_seen(self, hashes: np.ndarray) -> np.ndarray:
        """A boolean mask: True where the id may have been counted before (confirm it), False where surely not."""
        return self._main.contains(hashes) | self._recent.contains(hashes)

    def add(self, hashes: np.ndarray, hours: np.ndarray) -> None:
        recent = self._recent
        self._recent = _SortedRun(np.concatenate((recent.hashes, hashes)), np.concatenate((recent.hours, hours)))
        if len(self._recent) > max(65_536, len(self._main) // 4):
            self._merge()

    def expire(self, min_hour: int) -> None:
        """Forgets ids whose event hour (hours since the epoch) is before ``min_hour``."""
        self._main = self._main.keep(min_hour)
        self._recent = self._recent.keep(min_hour)

    def _merge(self) -> None:
        main, recent = self._main, self._recent
        self._main = _SortedRun(np.concatenate((main.hashes, recent.hashes)), np.concatenate((main.hours, recent.hours)))
        self._recent = _SortedRun(_EMPTY_HASHES, _EMPTY_HOURS)
