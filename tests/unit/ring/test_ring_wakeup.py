"""Wake-ups: a sleeping reader is woken by the doorbell, a busy one costs the writer nothing."""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import signal
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import eventually, unique_name

from pipeline.errors import OperationalError
from pipeline.records import TICK_DTYPE
from pipeline.ring import _OFF_SLOTS, RingReader, RingSpec, RingWriter
from pipeline.wakeup import BellRinger, Doorbell, Waiter

CTX = mp.get_context("spawn")
ENV = "test"
DEADLINE_S = 20.0


@pytest.fixture(autouse=True)
def _no_stray_children() -> Iterator[None]:
    """A failed test must not leave its worker processes running into the next one."""
    yield
    for child in CTX.active_children():
        child.kill()
        child.join(timeout=5)


def _report(queue: Any, fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> None:
    try:
        queue.put(fn(**kwargs))
    except BaseException:
        queue.put({"error": traceback.format_exc()})
        raise


def _wait_for_ticks(*, spec: RingSpec, shm_dir: Path, bell_dir: Path, total: int, spin_us: int,
                    received: Any, queue: Any) -> dict[str, Any]:
    """Block in Waiter.wait until ``total`` ticks arrived; note when each wake-up happened."""
    doorbell = Doorbell(bell_dir, "strategy")
    reader = RingReader(spec, "strategy", env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir)
    waiter = Waiter(doorbell, [reader], spin_us=spin_us, max_block_s=5.0)
    queue.put({"ready": True})
    woke_ns: list[int] = []
    deadline = time.monotonic() + DEADLINE_S
    while received.value < total and time.monotonic() < deadline:
        waiter.wait()
        woke_ns.append(time.monotonic_ns())
        reader.read(1024)
        received.value = reader.cursor
    return {"woke_ns": woke_ns, "sleeps": waiter.sleeps, "received": received.value,
            "lost": reader.lost}


def _ring_once_woken(*, bell_dir: Path, queue: Any) -> dict[str, Any]:
    """Open a doorbell, say so, and block on it (bounded) until it rings."""
    doorbell = Doorbell(bell_dir, "strategy")
    waiter = Waiter(doorbell, [], spin_us=0, max_block_s=DEADLINE_S)
    queue.put({"ready": True, "pid": os.getpid()})
    started = time.monotonic()
    waiter.wait()
    return {"waited_s": time.monotonic() - started}


def _start(results: Any, fn: Callable[..., dict[str, Any]], /, **kwargs: Any) -> Any:
    proc = CTX.Process(target=_report, args=(results, fn, kwargs), daemon=True)
    proc.start()
    return proc


def _get(queue: Any) -> dict[str, Any]:
    result: dict[str, Any] = queue.get(timeout=DEADLINE_S + 10)
    assert "error" not in result, result["error"]
    return result


def _at_least(counter: Any, value: int) -> Callable[[], bool]:
    return lambda: bool(counter.value >= value)


def _tick(seq: int) -> tuple[Any, ...]:
    record = np.zeros(1, dtype=TICK_DTYPE)
    record["seq"] = seq
    return tuple(record[0].item())


@pytest.fixture
def ring(shm_dir: Path) -> RingSpec:
    return RingSpec(unique_name("ticks"), TICK_DTYPE, 1024, lossless=False, readers=("strategy",))


@pytest.mark.slow
def test_a_sleeping_reader_in_another_process_is_woken_by_the_doorbell(
        ring: RingSpec, shm_dir: Path, tmp_path: Path) -> None:
    rounds = 5
    queue, received = CTX.Queue(), CTX.Value("q", 0, lock=False)
    proc = _start(queue, _wait_for_ticks, spec=ring, shm_dir=shm_dir, bell_dir=tmp_path,
                  total=rounds, spin_us=50, received=received, queue=queue)
    assert _get(queue)["ready"]
    ringer = BellRinger(tmp_path)
    writer = RingWriter(ring, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir, ring_bell=ringer)
    flag_at = _OFF_SLOTS + 8  # the first reader slot's "sleeping" word
    with open(shm_dir / ring.name, "rb") as segment, \
            mmap.mmap(segment.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        published_ns = []
        for seq in range(rounds):
            eventually(lambda: mm[flag_at:flag_at + 8] != bytes(8),
                       message="reader asleep on its doorbell")
            published_ns.append(time.monotonic_ns())
            writer.write_one(*_tick(seq))
            eventually(_at_least(received, seq + 1), timeout_s=DEADLINE_S)
    result = _get(queue)
    proc.join(timeout=10)
    assert proc.exitcode == 0
    assert ringer.rings == rounds
    woke_ns = result["woke_ns"]
    assert len(woke_ns) == rounds
    assert result["sleeps"] == rounds
    latencies_s = [(w - p) / 1e9 for w, p in zip(woke_ns, published_ns, strict=True)]
    print(f"doorbell wake latency: median {sorted(latencies_s)[rounds // 2] * 1e6:.0f} us, "
          f"max {max(latencies_s) * 1e6:.0f} us")
    assert all(0 < latency < 1.0 for latency in latencies_s), latencies_s  # max_block_s is 5


@pytest.mark.slow
def test_the_writer_does_not_ring_while_the_reader_is_busy_polling(
        ring: RingSpec, shm_dir: Path, tmp_path: Path) -> None:
    total = 2000
    queue, received = CTX.Queue(), CTX.Value("q", 0, lock=False)
    # A spin longer than the test: the reader polls and never marks itself asleep.
    proc = _start(queue, _wait_for_ticks, spec=ring, shm_dir=shm_dir, bell_dir=tmp_path,
                  total=total, spin_us=15_000_000, received=received, queue=queue)
    assert _get(queue)["ready"]
    ringer = BellRinger(tmp_path)
    writer = RingWriter(ring, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir, ring_bell=ringer)
    for seq in range(total):
        writer.write_one(*_tick(seq))
        if seq % 100 == 0:
            # Stay well within the lossy ring's capacity: this test is not about overruns.
            eventually(_at_least(received, seq - 500), timeout_s=DEADLINE_S)
    result = _get(queue)
    proc.join(timeout=10)
    assert (result["received"], result["lost"], result["sleeps"]) == (total, 0, 0)
    assert ringer.rings == 0


@pytest.mark.slow
def test_ringing_a_doorbell_whose_process_is_gone_does_not_raise(tmp_path: Path) -> None:
    # One queue per process: a process killed right after a put may die holding its lock.
    queues = [CTX.Queue() for _ in range(3)]
    ringer = BellRinger(tmp_path)
    ringer("strategy")  # never opened: nothing to ring
    assert ringer.rings == 0

    first = _start(queues[0], _ring_once_woken, bell_dir=tmp_path, queue=queues[0])
    assert _get(queues[0])["ready"]
    ringer("strategy")
    assert ringer.rings == 1
    assert _get(queues[0])["waited_s"] < 5.0
    first.join(timeout=10)
    assert first.exitcode == 0
    ringer("strategy")  # the cached FIFO has no reader any more: dropped quietly
    ringer("strategy")  # and the FIFO file is left behind with nobody reading it
    assert ringer.rings == 1

    killed = _start(queues[1], _ring_once_woken, bell_dir=tmp_path, queue=queues[1])
    os.kill(_get(queues[1])["pid"], signal.SIGKILL)
    killed.join(timeout=10)
    ringer("strategy")
    assert ringer.rings == 1

    again = _start(queues[2], _ring_once_woken, bell_dir=tmp_path, queue=queues[2])
    assert _get(queues[2])["ready"]
    ringer("strategy")  # the reader is back: the bell works again
    assert ringer.rings == 2
    assert _get(queues[2])["waited_s"] < 5.0
    again.join(timeout=10)
    ringer.close()


def test_waiter_returns_at_once_when_data_is_already_there(
        ring: RingSpec, shm_dir: Path, tmp_path: Path) -> None:
    writer = RingWriter(ring, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir)
    reader = RingReader(ring, "strategy", env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir)
    doorbell = Doorbell(tmp_path, "strategy")
    waiter = Waiter(doorbell, [reader], spin_us=10, max_block_s=5.0)
    writer.write_one(*_tick(0))
    started = time.monotonic()
    assert waiter.wait() == []
    assert time.monotonic() - started < 1.0
    assert waiter.sleeps == 0
    doorbell.close()


def test_waiter_sleeps_no_longer_than_its_timeout_and_clears_the_flag(
        ring: RingSpec, shm_dir: Path, tmp_path: Path) -> None:
    reader = RingReader(ring, "strategy", env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir)
    doorbell = Doorbell(tmp_path, "strategy")
    waiter = Waiter(doorbell, [reader], spin_us=10, max_block_s=5.0)
    ringer = BellRinger(tmp_path)
    writer = RingWriter(ring, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir, ring_bell=ringer)
    started = time.monotonic()
    assert waiter.wait(timeout_s=0.05) == []
    assert 0.04 <= time.monotonic() - started < 2.0
    assert waiter.sleeps == 1
    writer.write_one(*_tick(0))  # the reader is awake again: no ring
    assert ringer.rings == 0
    doorbell.close()


def test_several_rings_mean_one_wake_up_and_sockets_are_reported(tmp_path: Path) -> None:
    doorbell = Doorbell(tmp_path, "executor")
    waiter = Waiter(doorbell, [], spin_us=0, max_block_s=5.0)
    ringer = BellRinger(tmp_path)
    for _ in range(3):
        ringer("executor")
    assert waiter.wait() == []
    started = time.monotonic()
    assert waiter.wait(timeout_s=0.05) == []  # drained: this one times out
    assert time.monotonic() - started >= 0.04
    read_fd, write_fd = os.pipe()
    waiter.register(read_fd)
    os.write(write_fd, b"x")
    assert waiter.wait() == [read_fd]
    for fd in (read_fd, write_fd):
        os.close(fd)
    ringer.close()
    doorbell.close()


def test_a_doorbell_path_that_is_not_a_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ledger.bell").write_text("not a fifo")
    with pytest.raises(OperationalError, match="is a regular file, not a FIFO"):
        Doorbell(tmp_path, "ledger")
