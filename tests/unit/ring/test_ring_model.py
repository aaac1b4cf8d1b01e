"""Property test: any sequence of writes and reads matches a plain Python model of the ring.

The model keeps, per reader, a deque of the sequences it has not read yet. A lossy reader
that finds more than ``capacity`` unread drops the oldest and counts them as lost when it
next reads; a lossless writer accepts only as many records as the slowest reader has room for.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit import scratch_shm_dir, unique_name

from pipeline.records import INTENT_DTYPE, TICK_DTYPE
from pipeline.ring import RingReader, RingSpec, RingWriter

READERS = ("ledger", "monitor")

operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 40)),
        st.tuples(st.just("write_one"), st.just(0)),
        st.tuples(st.sampled_from(["read", "peek"]), st.integers(0, 1), st.integers(0, 40)),
    ),
    max_size=60,
)


def _records(dtype: np.dtype[np.void], first: int, count: int) -> np.ndarray:
    records = np.zeros(count, dtype=dtype)
    records[(dtype.names or ())[0]] = np.arange(first, first + count)
    return records


class Model:
    """What each reader should see next, and what it should have lost."""

    def __init__(self, capacity: int, lossless: bool) -> None:
        self.capacity = capacity
        self.lossless = lossless
        self.written = 0
        self.unread: list[deque[int]] = [deque() for _ in READERS]
        self.lost = [0 for _ in READERS]

    def free(self) -> int:
        if not self.lossless:
            return self.capacity
        return self.capacity - max(len(q) for q in self.unread)

    def write(self, count: int) -> int:
        accepted = min(count, self.free()) if self.lossless else count
        for queue in self.unread:
            queue.extend(range(self.written, self.written + accepted))
        self.written += accepted
        return accepted

    def read(self, index: int, count: int, consume: bool) -> list[int]:
        queue = self.unread[index]
        while len(queue) > self.capacity:  # lossy overrun, noticed on the next read
            queue.popleft()
            self.lost[index] += 1
        taken = [queue[i] for i in range(min(count, len(queue)))]
        if consume:
            for _ in taken:
                queue.popleft()
        return taken


def _check(ops: list[tuple[Any, ...]], capacity: int, lossless: bool) -> None:
    dtype = INTENT_DTYPE if lossless else TICK_DTYPE
    seq_field = (dtype.names or ())[0]
    with scratch_shm_dir() as shm_dir:
        spec = RingSpec(unique_name("model"), dtype, capacity, lossless=lossless, readers=READERS)
        writer = RingWriter(spec, env="test", run_id=uuid.uuid4(), shm_dir=shm_dir)
        readers = [RingReader(spec, name, env="test", run_id=uuid.uuid4(), shm_dir=shm_dir)
                   for name in READERS]
        model = Model(capacity, lossless)
        for op in ops:
            if op[0] == "write":
                first = writer.seq
                assert writer.write(_records(dtype, first, op[1])) == model.write(op[1])
            elif op[0] == "write_one":
                values = _records(dtype, writer.seq, 1)[0].item()
                assert writer.write_one(*values) == (model.write(1) == 1)
            else:
                _, index, count = op
                reader = readers[index]
                got = reader.read(count) if op[0] == "read" else reader.peek(count)
                assert list(got[seq_field]) == model.read(index, count, op[0] == "read")
                assert reader.lost == model.lost[index]
            assert writer.seq == model.written
            assert writer.free() == model.free()
            for reader, queue in zip(readers, model.unread, strict=True):
                assert reader.available() == len(queue)
                assert reader.cursor == model.written - len(queue)
        writer.close()


@settings(max_examples=150, deadline=None)
@given(ops=operations, capacity=st.sampled_from([2, 4, 8, 16]))
def test_lossy_ring_matches_the_model(ops: list[tuple[Any, ...]], capacity: int) -> None:
    _check(ops, capacity, lossless=False)


@settings(max_examples=150, deadline=None)
@given(ops=operations, capacity=st.sampled_from([2, 4, 8, 16]))
def test_lossless_ring_matches_the_model(ops: list[tuple[Any, ...]], capacity: int) -> None:
    _check(ops, capacity, lossless=True)
