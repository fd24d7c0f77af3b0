"""The agent's per-partition buffer: only positioned partitions, offsets in order, backpressure."""

from agents.buffers import PartitionBuffers


def test_only_accepted_partitions_are_buffered_in_offset_order():
    buffers = PartitionBuffers(flush_at_bytes=10_000, max_bytes=20_000)
    buffers.add(0, 5, b"k", b"v")  # before positioning: dropped
    buffers.accept({0, 1})
    for partition, offset in [(0, 6), (1, 3), (0, 7), (0, 7), (0, 6), (2, 1)]:
        buffers.add(partition, offset, b"k", b"v")
    taken = buffers.take()
    assert {p: [m.offset for m in ms] for p, ms in taken.items()} == {0: [6, 7], 1: [3]}
    buffers.add(0, 7, b"k", b"v")  # already taken once: a repeat
    buffers.add(0, 8, b"k", b"v")
    assert [m.offset for m in buffers.take()[0]] == [8]


def test_size_asks_for_a_flush_then_stops_reading():
    buffers = PartitionBuffers(flush_at_bytes=1_000, max_bytes=2_000)
    buffers.accept({0})
    offset = 0
    while not buffers.flush_wanted.is_set():
        buffers.add(0, offset, None, b"x" * 300)
        offset += 1
    assert not buffers.full
    while not buffers.full:
        buffers.add(0, offset, None, b"x" * 300)
        offset += 1
    buffers.take()
    assert not buffers.full and not buffers.flush_wanted.is_set()
    buffers.add(0, offset, None, b"x" * 300)  # the byte count started again from zero
    assert not buffers.flush_wanted.is_set()


def test_a_tombstone_is_buffered_for_the_flush_to_dead_letter():
    buffers = PartitionBuffers(1_000, 2_000)
    buffers.accept({0})
    buffers.add(0, 4, b"k", None)
    [message] = buffers.take()[0]
    assert (message.offset, message.key, message.value) == (4, b"k", None)


def test_reset_forgets_what_was_seen():
    buffers = PartitionBuffers(1_000, 2_000)
    buffers.accept({0})
    buffers.add(0, 9, None, b"v")
    buffers.reset()
    buffers.add(0, 3, None, b"v")  # re-positioned earlier: accepted again
    assert [m.offset for m in buffers.take()[0]] == [3]
