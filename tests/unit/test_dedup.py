"""The in-memory seen-request filter (pipeline/metering/dedup.py) alone: what it answers, what it holds and
when its small recent run is merged into the main one. Expected values are hand arithmetic."""

from __future__ import annotations

import numpy as np
import xxhash

from pipeline.metering.dedup import SeenRequests, request_id_hashes


def hours(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32)


def test_request_ids_hash_to_xxhash64_of_their_utf8_bytes_as_clickhouse_computes():
    ids = ["a", "req-ü", ""]
    assert request_id_hashes(ids).tolist() == [xxhash.xxh64_intdigest(i.encode("utf-8")) for i in ids]
    assert request_id_hashes(ids).dtype == np.uint64 and request_id_hashes([]).shape == (0,)


def test_an_empty_filter_has_seen_nothing():
    seen = SeenRequests()
    assert (len(seen), seen.nbytes) == (0, 0)
    assert seen.maybe_seen(request_id_hashes(["a", "b"])).tolist() == [False, False]


def test_ids_are_found_in_either_run_also_beyond_the_largest_hash_held():
    held = request_id_hashes([f"main-{i}" for i in range(3)])
    seen = SeenRequests(held, hours(5, 5, 5))
    seen.add(request_id_hashes(["recent-1", "recent-2"]), hours(6, 6))
    asked = np.concatenate((held, request_id_hashes(["recent-2", "never"]),
                            np.asarray([held.max() + 1, held.min() - 1, 0, np.iinfo(np.uint64).max], dtype=np.uint64)))
    assert seen.maybe_seen(asked).tolist() == [True, True, True, True, False, False, False, False, False]


def test_an_id_held_by_both_runs_is_still_seen():
    seen = SeenRequests(request_id_hashes(["twice"]), hours(5))
    seen.add(request_id_hashes(["twice"]), hours(6))
    assert seen.maybe_seen(request_id_hashes(["twice"])).tolist() == [True]


def test_size_and_bytes_count_both_runs_at_12_bytes_an_id():
    seen = SeenRequests(request_id_hashes(["a", "b", "c"]), hours(1, 1, 1))
    seen.add(request_id_hashes(["d", "e"]), hours(2, 2))
    assert len(seen) == 5
    assert seen.nbytes == 5 * (8 + 4)  # a uint64 hash and a uint32 hour each


def test_expiry_forgets_ids_before_the_hour_in_both_runs_and_keeps_the_hour_itself():
    seen = SeenRequests(request_id_hashes(["m9", "m10", "m11"]), hours(9, 10, 11))
    seen.add(request_id_hashes(["r9", "r10", "r12"]), hours(9, 10, 12))
    seen.expire(10)
    assert len(seen) == 4
    assert seen.maybe_seen(request_id_hashes(["m9", "m10", "m11", "r9", "r10", "r12"])).tolist() == [
        False, True, True, False, True, True]


def test_the_recent_run_is_merged_once_it_outgrows_65536_ids_or_a_quarter_of_the_main_run():
    """The documented cost policy: adding a flush's ids sorts only the recent run until it holds more than
    max(65,536, len(main) // 4) ids; then both become one main run. Every id stays findable either way."""
    seen = SeenRequests()
    seen.add(np.arange(10, dtype=np.uint64), np.zeros(10, dtype=np.uint32))
    assert (len(seen._main), len(seen._recent)) == (0, 10)  # a flush's few ids stay in the recent run
    seen.add(np.arange(10, 65_536, dtype=np.uint64), np.zeros(65_526, dtype=np.uint32))
    assert (len(seen._main), len(seen._recent)) == (0, 65_536)  # at the threshold: no merge yet
    seen.add(np.asarray([1 << 40], dtype=np.uint64), hours(0))
    assert (len(seen._main), len(seen._recent)) == (65_537, 0)  # one more: merged

    big = SeenRequests(np.arange(400_003, dtype=np.uint64) + (1 << 41), np.zeros(400_003, dtype=np.uint32))
    big.add(np.arange(100_000, dtype=np.uint64), np.zeros(100_000, dtype=np.uint32))
    assert (len(big._main), len(big._recent)) == (400_003, 100_000)  # 400,003 // 4 = 100,000: not more
    big.add(np.asarray([1 << 40], dtype=np.uint64), hours(0))
    assert (len(big._main), len(big._recent)) == (500_004, 0)
    assert big.maybe_seen(np.asarray([0, 99_999, 1 << 40, 1 << 41, (1 << 41) + 400_002, 100_000],
                                     dtype=np.uint64)).tolist() == [True] * 5 + [False]
