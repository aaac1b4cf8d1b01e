"""Ring rules in one process: overruns, back-pressure, restarts, refusals and close()."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from testkit import eventually, unique_name

from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, TICK_DTYPE
from pipeline.ring import (
    RingError,
    RingMismatchError,
    RingNotFoundError,
    RingReader,
    RingSpec,
    RingWriter,
)

ENV = "test"


def ticks(first: int, count: int) -> np.ndarray:
    records = np.zeros(count, dtype=TICK_DTYPE)
    records["seq"] = np.arange(first, first + count)
    records["price"] = records["seq"] * 0.5
    return records


def intents(first: int, count: int) -> np.ndarray:
    records = np.zeros(count, dtype=INTENT_DTYPE)
    records["client_order_id"] = np.arange(first, first + count)
    return records


def writer_for(spec: RingSpec, shm_dir: Path, *, env: str = ENV,
               backpressure_timeout_s: float = 0.0) -> RingWriter:
    return RingWriter(spec, env=env, run_id=uuid.uuid4(), shm_dir=shm_dir,
                      backpressure_timeout_s=backpressure_timeout_s, open_timeout_s=0.2)


def reader_for(spec: RingSpec, name: str, shm_dir: Path, *, env: str = ENV) -> RingReader:
    return RingReader(spec, name, env=env, run_id=uuid.uuid4(), shm_dir=shm_dir,
                      open_timeout_s=0.2)


def lossy(capacity: int = 8) -> RingSpec:
    return RingSpec(unique_name("ticks"), TICK_DTYPE, capacity, lossless=False,
                    readers=("strategy",))


def lossless(capacity: int = 8, readers: tuple[str, ...] = ("executor",)) -> RingSpec:
    return RingSpec(unique_name("intents"), INTENT_DTYPE, capacity, lossless=True,
                    readers=readers)


def test_lossy_overrun_counts_exactly_what_was_skipped_and_resumes_at_the_oldest(
        shm_dir: Path) -> None:
    spec = lossy(8)
    writer, reader = writer_for(spec, shm_dir), reader_for(spec, "strategy", shm_dir)
    assert writer.write(ticks(0, 3)) == 3
    assert list(reader.read(2)["seq"]) == [0, 1]
    assert writer.write(ticks(3, 20)) == 20  # a lossy writer never waits
    assert reader.available() == 21
    assert list(reader.read(3)["seq"]) == [15, 16, 17]  # oldest still in the ring is 23 - 8
    assert reader.lost == 13
    for seq in range(23, 26):
        assert writer.write_one(*ticks(seq, 1)[0].item())
    assert list(reader.read(100)["seq"]) == [18, 19, 20, 21, 22, 23, 24, 25]
    assert reader.lost == 13
    assert reader.cursor == writer.seq == 26


def test_lossless_writer_stops_at_the_bound_and_never_overwrites_unread_records(
        shm_dir: Path) -> None:
    spec = lossless(8)
    writer = writer_for(spec, shm_dir, backpressure_timeout_s=0.05)
    reader = reader_for(spec, "executor", shm_dir)
    started = time.monotonic()
    assert writer.write(intents(0, 12)) == 8
    elapsed_s = time.monotonic() - started
    assert 0.05 <= elapsed_s < 1.0
    assert (writer.backpressure_waits, writer.backpressure_timeouts) == (1, 1)
    assert not writer.write_one(*intents(8, 1)[0].item())
    assert (writer.backpressure_waits, writer.backpressure_timeouts) == (2, 2)

    assert list(reader.read(3)["client_order_id"]) == [0, 1, 2]
    started = time.monotonic()
    assert writer.write(intents(8, 4)) == 3  # what fits after one bound, not two
    assert time.monotonic() - started < 0.05 + 0.5
    assert writer.backpressure_timeouts == 3  # counted once for the call
    assert list(reader.read(100)["client_order_id"]) == list(range(3, 11))
    assert writer.write(intents(11, 1)) == 1
    assert (writer.backpressure_waits, writer.backpressure_timeouts) == (3, 3)


def test_lossless_writer_resumes_as_soon_as_the_reader_advances(shm_dir: Path) -> None:
    spec = lossless(8)
    writer = writer_for(spec, shm_dir, backpressure_timeout_s=10.0)
    reader = reader_for(spec, "executor", shm_dir)
    assert writer.write(intents(0, 8)) == 8
    got: list[int] = []

    def consume_once_the_writer_waits() -> None:
        eventually(lambda: writer.backpressure_waits == 1)
        got.extend(int(x) for x in reader.read(5)["client_order_id"])

    helper = threading.Thread(target=consume_once_the_writer_waits)
    helper.start()
    started = time.monotonic()
    assert writer.write(intents(8, 5)) == 5
    assert time.monotonic() - started < 5.0  # woken by the reader, not by the 10 s bound
    helper.join(timeout=5)
    assert got == [0, 1, 2, 3, 4]
    assert writer.backpressure_timeouts == 0
    assert list(reader.read(100)["client_order_id"]) == list(range(5, 13))


def test_slowest_of_several_lossless_readers_holds_the_writer(shm_dir: Path) -> None:
    spec = lossless(4, readers=("ledger", "monitor"))
    writer = writer_for(spec, shm_dir)
    fast, slow = reader_for(spec, "ledger", shm_dir), reader_for(spec, "monitor", shm_dir)
    assert writer.write(intents(0, 4)) == 4
    assert len(fast.read(4)) == 4
    assert writer.free() == 0
    assert writer.write(intents(4, 1)) == 0
    assert list(slow.read(1)["client_order_id"]) == [0]
    assert writer.write(intents(4, 5)) == 1
    assert list(fast.read(9)["client_order_id"]) == [4]
    assert list(slow.read(9)["client_order_id"]) == [1, 2, 3, 4]


def test_a_new_writer_on_an_existing_segment_continues_the_sequence(shm_dir: Path) -> None:
    spec = lossless(8)
    first = writer_for(spec, shm_dir)
    reader = reader_for(spec, "executor", shm_dir)
    assert first.created
    assert not reader.created
    assert first.write(intents(0, 5)) == 5
    assert not first.close()  # unread records: the segment stays
    second = writer_for(spec, shm_dir)
    assert not second.created
    assert second.seq == 5
    assert second.instance_id == reader.instance_id
    assert second.write(intents(5, 3)) == 3
    assert list(reader.read(100)["client_order_id"]) == list(range(8))


def test_a_reader_that_reattaches_resumes_from_its_stored_cursor(shm_dir: Path) -> None:
    spec = lossless(8)
    writer = writer_for(spec, shm_dir)
    first = reader_for(spec, "executor", shm_dir)
    writer.write(intents(0, 6))
    assert len(first.read(4)) == 4
    first.close()
    again = reader_for(spec, "executor", shm_dir)
    assert again.cursor == 4
    assert list(again.read(100)["client_order_id"]) == [4, 5]
    with pytest.raises(RingError, match="beyond the published sequence"):
        again.seek(7)


def test_a_different_record_layout_is_refused(shm_dir: Path) -> None:
    spec = lossy(8)
    writer_for(spec, shm_dir)
    other_size = RingSpec(spec.name, REPORT_DTYPE, 8, lossless=False, readers=("strategy",))
    with pytest.raises(RingMismatchError, match="record layout differs"):
        reader_for(other_size, "strategy", shm_dir)
    renamed = np.dtype([("tick_seq" if n == "seq" else n, TICK_DTYPE[n])
                        for n in TICK_DTYPE.names or ()])
    same_size = RingSpec(spec.name, renamed, 8, lossless=False, readers=("strategy",))
    with pytest.raises(RingMismatchError, match=r"record layout differs.*tick_seq:<u8"):
        reader_for(same_size, "strategy", shm_dir)


def test_another_environment_is_refused(shm_dir: Path) -> None:
    spec = lossy(8)
    writer_for(spec, shm_dir, env="paper")
    with pytest.raises(RingMismatchError, match=r"environment 'paper'.*'mainnet'"):
        reader_for(spec, "strategy", shm_dir, env="mainnet")


def test_another_capacity_kind_or_reader_list_is_refused(shm_dir: Path) -> None:
    spec = lossless(8, readers=("ledger", "monitor"))
    writer_for(spec, shm_dir)
    cases = [
        (RingSpec(spec.name, INTENT_DTYPE, 16, lossless=True, readers=spec.readers),
         "segment is .* bytes"),
        (RingSpec(spec.name, INTENT_DTYPE, 8, lossless=False, readers=spec.readers),
         r"capacity/kind in segment \(8/1\) differ from config \(8/0\)"),
        (RingSpec(spec.name, INTENT_DTYPE, 8, lossless=True, readers=("monitor", "ledger")),
         "declared readers.*let that one finish it, or remove .* unread records are lost"),
    ]
    for other, message in cases:
        with pytest.raises(RingMismatchError, match=message):
            writer_for(other, shm_dir)


def test_a_lossy_ring_left_by_another_version_says_it_can_go(shm_dir: Path) -> None:
    """The tick ring's reader "monitor" became "localnet": an old crashed run's segment is
    refused with what to do about it, not just that it differs."""
    old = RingSpec("t-ticks", TICK_DTYPE, 8, lossless=False, readers=("strategy", "monitor"))
    writer_for(old, shm_dir)
    new = RingSpec("t-ticks", TICK_DTYPE, 8, lossless=False, readers=("strategy", "localnet"))
    with pytest.raises(RingMismatchError,
                       match=r"declared readers.*remove .*t-ticks \(a lossy ring: nothing is lost"):
        reader_for(new, "strategy", shm_dir)


def test_undeclared_reader_and_bad_specs_are_refused(shm_dir: Path) -> None:
    spec = lossless(8)
    with pytest.raises(RingError, match="'auditor' is not a declared reader"):
        reader_for(spec, "auditor", shm_dir)
    with pytest.raises(ValueError, match="power of two, got 1000"):
        RingSpec("x", TICK_DTYPE, 1000, lossless=False)
    with pytest.raises(ValueError, match="needs declared readers"):
        RingSpec("x", TICK_DTYPE, 1024, lossless=True)
    with pytest.raises(ValueError, match="plain file name"):
        RingSpec("a/b", TICK_DTYPE, 1024, lossless=False)


def test_a_segment_that_was_never_initialised_is_reported(shm_dir: Path) -> None:
    spec = lossy(8)
    (shm_dir / spec.name).write_bytes(bytes(8192))  # creator died before writing the magic
    (shm_dir / spec.name).chmod(0o600)  # as the pipeline makes them
    with pytest.raises(RingNotFoundError, match="never initialised"):
        writer_for(spec, shm_dir)


def test_close_unlinks_a_lossless_ring_only_once_every_reader_drained_it(shm_dir: Path) -> None:
    spec = lossless(8, readers=("ledger", "monitor"))
    writer = writer_for(spec, shm_dir)
    ledger, monitor = reader_for(spec, "ledger", shm_dir), reader_for(spec, "monitor", shm_dir)
    writer.write(intents(0, 3))
    ledger.read(3)
    assert not writer.close()
    assert (shm_dir / spec.name).exists()
    assert not monitor.closed
    writer = writer_for(spec, shm_dir)
    monitor.read(3)
    assert writer.close()
    assert not (shm_dir / spec.name).exists()
    assert monitor.closed
    assert ledger.closed


def test_close_of_a_lossy_ring_always_unlinks(shm_dir: Path) -> None:
    spec = lossy(8)
    writer = writer_for(spec, shm_dir)
    reader = reader_for(spec, "strategy", shm_dir)
    writer.write(ticks(0, 5))
    assert writer.close()
    assert reader.closed
    assert not (shm_dir / spec.name).exists()
    assert not writer_for(spec, shm_dir).close(unlink_if_drained=False)
