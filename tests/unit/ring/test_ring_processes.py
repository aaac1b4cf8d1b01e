"""The ring across real processes: no torn record ever accepted, nothing lost or doubled.

Every record is a deterministic function of its sequence number plus a checksum word over the
other fields, so a reader in another process can prove each record it accepts is whole. The
workers run under the "spawn" start method (a fresh interpreter, as in production) and report
through a queue; every wait has a deadline.
"""

from __future__ import annotations

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

from pipeline.records import INTENT_DTYPE, TICK_DTYPE
from pipeline.ring import RingReader, RingSpec, RingWriter

CTX = mp.get_context("spawn")
ENV = "test"
DEADLINE_S = 40.0
# The word holding the checksum, per layout: any i8 field not used for the sequence.
CHECKSUM_FIELD = {TICK_DTYPE: "source_ts_ns", INTENT_DTYPE: "decision_ns"}


@pytest.fixture(autouse=True)
def _no_stray_children() -> Iterator[None]:
    """A failed test must not leave its worker processes running into the next one."""
    yield
    for child in CTX.active_children():
        child.kill()
        child.join(timeout=5)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wraps, never warns)."""
    x = np.asarray(x, dtype=np.uint64)
    x = x ^ (x >> 30)
    x = x * 0xBF58476D1CE4E5B9
    x = x ^ (x >> 27)
    x = x * 0x94D049BB133111EB
    mixed: np.ndarray = x ^ (x >> 31)
    return mixed


def _words(records: np.ndarray) -> np.ndarray:
    return records.view(np.uint64).reshape(len(records), records.dtype.itemsize // 8)


def _checksum(records: np.ndarray) -> np.ndarray:
    """A hash of every 8-byte word of each record except the checksum word itself."""
    skip = records.dtype.fields[CHECKSUM_FIELD[records.dtype]][1] // 8  # type: ignore[index]
    words = _words(records)
    h = np.zeros(len(records), dtype=np.uint64)
    for col in range(words.shape[1]):
        if col != skip:
            h = _mix(h ^ words[:, col])
    return h


def make_records(dtype: np.dtype[np.void], seqs: np.ndarray) -> np.ndarray:
    """Records whose every field is a function of the sequence (the first field)."""
    s = seqs.astype(np.uint64)
    out = np.zeros(len(s), dtype=dtype)
    names = dtype.names or ()
    out[names[0]] = s
    for index, name in enumerate(names[1:], start=1):
        if name == CHECKSUM_FIELD[dtype]:
            continue
        h = _mix(s + np.uint64(index * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF))
        if dtype[name].kind == "f":
            out[name] = (h >> 11).astype(np.float64) * 2.0**-30  # exact, finite
        else:
            out[name] = h.astype(dtype[name])
    out[CHECKSUM_FIELD[dtype]] = _checksum(out).view(np.int64)
    return out


def _report(queue: Any, fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> None:
    """Run a worker and put its result (or its traceback) on the queue."""
    try:
        queue.put(fn(**kwargs))
    except BaseException:
        queue.put({"error": traceback.format_exc()})
        raise


def _write_stream(*, spec: RingSpec, shm_dir: Path, first: int, total: int, seed: int,
                  rate_per_s: float) -> dict[str, Any]:
    """Publish records first..total-1 as a mix of write_one and batches of 1..300.

    A positive ``rate_per_s`` caps the average rate, so that a lossy reader keeps up part of
    the time (and races the writer for the oldest slots) instead of only ever overrunning.
    """
    writer = RingWriter(spec, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir,
                        backpressure_timeout_s=0.02)
    assert writer.seq == first, (writer.seq, first)
    records = make_records(spec.dtype, np.arange(first, total))
    rng = np.random.default_rng(seed)
    done, ones, start = 0, 0, time.perf_counter()
    deadline = time.monotonic() + DEADLINE_S
    while done < len(records):
        if time.monotonic() > deadline:
            raise TimeoutError(f"writer stuck at {done} of {len(records)}")
        if rng.random() < 0.3:
            if writer.write_one(*records[done].item()):
                done, ones = done + 1, ones + 1
        else:
            size = int(rng.integers(1, 301))
            done += writer.write(records[done:done + size])
        while rate_per_s and done > rate_per_s * (time.perf_counter() - start):
            os.sched_yield()
    elapsed = time.perf_counter() - start
    return {"role": "writer", "written": done, "write_one": ones, "elapsed_s": elapsed,
            "rate": done / elapsed, "waits": writer.backpressure_waits,
            "timeouts": writer.backpressure_timeouts}


def _read_stream(*, spec: RingSpec, name: str, shm_dir: Path, total: int, queue: Any,
                 max_batch: int, progress: Any = None,
                 log_path: Path | None = None) -> dict[str, Any]:
    """Read until the cursor reaches ``total``, checking every accepted record."""
    reader = RingReader(spec, name, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir)
    start_cursor = reader.cursor
    queue.put({"role": "ready", "name": name, "pid": os.getpid()})
    seq_field = (spec.dtype.names or ())[0]
    accepted, bad, out_of_order, overruns, batches = 0, 0, 0, 0, 0
    last = start_cursor - 1
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if log_path else -1
    deadline = time.monotonic() + DEADLINE_S
    t0 = time.perf_counter()
    while reader.cursor < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reader {name} stuck at {reader.cursor} of {total}")
        if not spec.lossless and batches % 8 == 4:
            # Fall more than a capacity behind to force an overrun; the next peek then copies
            # the oldest slots while the writer is overwriting them (the torn-read race).
            while (reader.available() <= 2 * spec.capacity and reader.write_seq < total
                   and time.monotonic() < deadline):
                os.sched_yield()
            overruns += reader.available() > spec.capacity
        batch = reader.peek(max_batch)
        if not len(batch):
            os.sched_yield()
            continue
        batches += 1
        seqs = batch[seq_field].astype(np.int64)
        bad += int(np.count_nonzero(_checksum(batch) != batch[CHECKSUM_FIELD[spec.dtype]]
                                    .view(np.uint64)))
        bad += int(np.count_nonzero((_words(batch) != _words(make_records(spec.dtype, seqs)))
                                    .any(axis=1)))
        if spec.lossless:
            out_of_order += int(np.count_nonzero(seqs != np.arange(last + 1, last + 1 + len(seqs))))
        else:
            out_of_order += int(seqs[0] <= last) + int(np.count_nonzero(np.diff(seqs) <= 0))
        if log_fd >= 0:
            os.write(log_fd, seqs.tobytes())
        reader.advance(len(batch))
        out_of_order += int(reader.cursor != seqs[-1] + 1)
        last = int(seqs[-1])
        accepted += len(batch)
        if progress is not None:
            progress.value = reader.cursor
    elapsed = time.perf_counter() - t0
    return {"role": "reader", "name": name, "start_cursor": start_cursor, "accepted": accepted,
            "lost": reader.lost, "bad": bad, "out_of_order": out_of_order,
            "overruns": overruns, "rate": accepted / elapsed, "cursor": reader.cursor}


def _start(results: Any, fn: Callable[..., dict[str, Any]], /, **kwargs: Any) -> Any:
    proc = CTX.Process(target=_report, args=(results, fn, kwargs), daemon=True)
    proc.start()
    return proc


def _get(queue: Any) -> dict[str, Any]:
    result: dict[str, Any] = queue.get(timeout=DEADLINE_S + 10)
    assert "error" not in result, result["error"]
    return result


def _join(*procs: Any) -> None:
    for proc in procs:
        proc.join(timeout=10)
        assert proc.exitcode == 0, f"{proc.name} exited with {proc.exitcode}"


def _run_stream(spec: RingSpec, shm_dir: Path, total: int,
                rate_per_s: float = 0.0) -> list[dict[str, Any]]:
    """Readers attach first, then one writer publishes ``total`` records."""
    queue = CTX.Queue()
    readers = [_start(queue, _read_stream, spec=spec, name=name, shm_dir=shm_dir, total=total,
                      queue=queue, max_batch=spec.capacity) for name in spec.readers]
    for _ in readers:
        assert _get(queue)["role"] == "ready"
    writer = _start(queue, _write_stream, spec=spec, shm_dir=shm_dir, first=0, total=total,
                    seed=7, rate_per_s=rate_per_s)
    results = [_get(queue) for _ in range(len(readers) + 1)]
    _join(writer, *readers)
    for result in results:
        print(result)  # throughput, shown with pytest -s
    return results


@pytest.mark.slow
def test_lossy_reader_in_another_process_never_accepts_a_torn_record(shm_dir: Path) -> None:
    total = 2_000_000
    spec = RingSpec(unique_name("ticks"), TICK_DTYPE, 1024, lossless=False, readers=("strategy",))
    results = _run_stream(spec, shm_dir, total, rate_per_s=1_000_000)
    writer = next(r for r in results if r["role"] == "writer")
    reader = next(r for r in results if r["role"] == "reader")
    assert writer["written"] == total
    assert writer["write_one"] > 1000  # both publication paths were exercised
    assert reader["bad"] == 0
    assert reader["out_of_order"] == 0
    assert reader["accepted"] + reader["lost"] == total
    assert reader["overruns"] > 0
    assert reader["lost"] > 0
    assert reader["accepted"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("readers", [("executor",), ("ledger", "monitor")])
def test_lossless_readers_in_other_processes_get_every_record_once_in_order(
        shm_dir: Path, readers: tuple[str, ...]) -> None:
    total = 2_000_000
    spec = RingSpec(unique_name("intents"), INTENT_DTYPE, 1024, lossless=True, readers=readers)
    results = _run_stream(spec, shm_dir, total)
    writer = next(r for r in results if r["role"] == "writer")
    assert writer["written"] == total
    for reader in (r for r in results if r["role"] == "reader"):
        assert reader["bad"] == 0
        assert reader["out_of_order"] == 0
        assert (reader["accepted"], reader["lost"]) == (total, 0)


@pytest.mark.slow
def test_reader_killed_mid_stream_is_resumed_by_a_new_process_from_its_cursor(
        shm_dir: Path, tmp_path: Path) -> None:
    total = 300_000
    spec = RingSpec(unique_name("reports"), INTENT_DTYPE, 1024, lossless=True,
                    readers=("ledger",))
    # The reader to be killed reports on its own queue: it may die holding a queue's lock.
    doomed_queue, queue = CTX.Queue(), CTX.Queue()
    progress = CTX.Value("q", 0, lock=False)
    log_path = tmp_path / "first.seqs"
    first = _start(doomed_queue, _read_stream, spec=spec, name="ledger", shm_dir=shm_dir,
                   total=total, queue=doomed_queue, max_batch=64, progress=progress,
                   log_path=log_path)
    assert _get(doomed_queue)["role"] == "ready"
    writer = _start(queue, _write_stream, spec=spec, shm_dir=shm_dir, first=0, total=total,
                    seed=11, rate_per_s=0)
    eventually(lambda: progress.value >= total // 4, timeout_s=DEADLINE_S,
               message="first reader consumed a quarter of the stream")
    os.kill(first.pid, signal.SIGKILL)
    first.join(timeout=10)
    assert first.exitcode == -signal.SIGKILL

    second = _start(queue, _read_stream, spec=spec, name="ledger", shm_dir=shm_dir, total=total,
                    queue=queue, max_batch=512)
    ready = _get(queue)
    assert ready["role"] == "ready"
    results = [_get(queue), _get(queue)]
    _join(writer, second)
    resumed = next(r for r in results if r["role"] == "reader")
    handled = np.fromfile(log_path, dtype=np.int64)  # what the killed reader peeked and logged
    cursor = resumed["start_cursor"]
    assert total // 4 <= cursor < total  # killed mid-stream
    np.testing.assert_array_equal(handled, np.arange(len(handled)))
    # The cursor lags the log by at most the one batch it logged but did not advance past.
    assert 0 <= len(handled) - cursor <= 64
    assert resumed["out_of_order"] == 0
    assert resumed["bad"] == 0
    assert (resumed["accepted"], resumed["cursor"]) == (total - cursor, total)


@pytest.mark.slow
def test_writer_killed_mid_stream_is_continued_by_a_new_writer(shm_dir: Path) -> None:
    total = 200_000
    spec = RingSpec(unique_name("intents"), INTENT_DTYPE, 1024, lossless=True,
                    readers=("executor",))
    # The writer to be killed gets its own queue (kept referenced until its child has started).
    doomed_queue, queue = CTX.Queue(), CTX.Queue()
    progress = CTX.Value("q", 0, lock=False)
    reader = _start(queue, _read_stream, spec=spec, name="executor", shm_dir=shm_dir,
                    total=total, queue=queue, max_batch=512, progress=progress)
    assert _get(queue)["role"] == "ready"
    doomed = _start(doomed_queue, _write_stream, spec=spec, shm_dir=shm_dir, first=0, total=total,
                    seed=13, rate_per_s=50_000)
    eventually(lambda: progress.value >= 20_000 or not doomed.is_alive(), timeout_s=DEADLINE_S,
               message="the first writer published 20,000 records")
    assert doomed.is_alive(), _get(doomed_queue)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(timeout=10)
    assert doomed.exitcode == -signal.SIGKILL

    restarted = RingWriter(spec, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir)
    resume_at = restarted.seq
    assert not restarted.created
    assert 20_000 <= resume_at < total
    restarted.close(unlink_if_drained=False)
    result = _write_stream(spec=spec, shm_dir=shm_dir, first=resume_at, total=total, seed=17,
                           rate_per_s=0)
    assert result["written"] == total - resume_at
    read = _get(queue)
    _join(reader)
    assert (read["accepted"], read["lost"], read["bad"], read["out_of_order"]) == (total, 0, 0, 0)


def _attach_together(*, spec: RingSpec, name: str, shm_dir: Path, barrier: Any) -> dict[str, Any]:
    barrier.wait(timeout=DEADLINE_S)
    reader = RingReader(spec, name, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir)
    return {"created": reader.created, "instance": str(reader.instance_id)}


@pytest.mark.slow
def test_processes_racing_to_open_a_ring_agree_on_one_segment(shm_dir: Path) -> None:
    names = ("ledger", "monitor", "auditor", "archiver")
    spec = RingSpec(unique_name("reports"), INTENT_DTYPE, 1024, lossless=True, readers=names)
    queue, barrier = CTX.Queue(), CTX.Barrier(len(names))
    procs = [_start(queue, _attach_together, spec=spec, name=name, shm_dir=shm_dir,
                    barrier=barrier) for name in names]
    results = [_get(queue) for _ in names]
    _join(*procs)
    assert sum(r["created"] for r in results) == 1
    assert len({r["instance"] for r in results}) == 1
