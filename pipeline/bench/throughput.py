"""Section a: one writer to one reader in another process, every record checked.

Each transport moves ``TICK_DTYPE`` records (48 bytes) whose ``seq`` field counts up; the
reader checks every sequence and reports the time it saw the last one. Records per second
is the count over (reader's last-record time - writer's start time), both from
``time.monotonic_ns`` (one clock for all processes on the host). The reader always uses the
transport's own blocking receive, except the ring, whose reader busy-polls as the strategy does.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import tempfile
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline import ring
from pipeline.records import TICK_DTYPE

BATCH: Final = 256
_CTX = mp.get_context("fork")  # children inherit the imports; nothing threaded runs yet


class CheckError(RuntimeError):
    """A reader saw a record out of sequence: the transport lost or reordered data."""


def _records(n: int) -> np.ndarray:
    out = np.zeros(n, dtype=TICK_DTYPE)
    out["seq"] = np.arange(n, dtype=np.uint64)
    out["price"] = 150.0
    out["symbol_id"] = 1
    return out


def _check(batch: np.ndarray, expected: int) -> int:
    """Return the next expected seq after checking every record of ``batch``."""
    seq = batch["seq"]
    n = len(seq)
    if n and not (int(seq[0]) == expected and int(seq[-1]) == expected + n - 1
                  and bool((np.diff(seq) == 1).all())):
        raise CheckError(f"records out of sequence after {expected}")
    return expected + n


def _run(reader: Callable[[Connection, int], None], writer: Callable[[int], None],
         total: int, setup: Callable[[], Any] | None = None) -> float:
    """Start the reader process, run the writer here; records per second."""
    parent, child = _CTX.Pipe()
    proc = _CTX.Process(target=reader, args=(child, total), daemon=True)
    proc.start()
    try:
        if parent.recv() != "ready":
            raise RuntimeError("reader failed to start")
        start_ns = time.monotonic_ns()
        writer(total)
        if not parent.poll(60):
            raise RuntimeError("reader did not finish within 60 s")
        result = parent.recv()
        if isinstance(result, str):
            raise CheckError(result)
        end_ns = int(result)
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    return total / ((end_ns - start_ns) / 1e9)


def _report(conn: Connection, body: Callable[[], None]) -> None:
    try:
        body()
    except CheckError as exc:
        conn.send(str(exc))


# -- the project's ring -------------------------------------------------------------------
def ring_trial(total: int, batched: bool) -> float:
    shm = Path(tempfile.mkdtemp(prefix="bench-", dir="/dev/shm"))
    spec = ring.RingSpec(f"bench-{uuid.uuid4().hex[:8]}", TICK_DTYPE, 65536, lossless=True,
                         readers=("reader",))
    kwargs: dict[str, Any] = {"env": "bench", "run_id": uuid.uuid4(), "shm_dir": shm,
                              "backpressure_timeout_s": 10.0}
    writer = ring.RingWriter(spec, **kwargs)
    data = _records(total)

    def reader(conn: Connection, n: int) -> None:
        kwargs.pop("backpressure_timeout_s")
        rd = ring.RingReader(spec, "reader", **kwargs)

        def body() -> None:
            conn.send("ready")
            expected = 0
            while expected < n:
                expected = _check(rd.read(4096), expected)
            conn.send(time.monotonic_ns())
        _report(conn, body)

    def write(n: int) -> None:
        if batched:
            for start in range(0, n, BATCH):
                writer.write(data[start:start + BATCH])
            return
        write_one = writer.write_one
        for seq in range(n):
            write_one(seq, 0, 0, 150.0, 0.0, 1, 0, 0)

    try:
        return _run(reader, write, total)
    finally:
        writer.close()
        ring.unlink(spec.name, shm)
        shm.rmdir()


# -- multiprocessing.Queue ----------------------------------------------------------------
def mp_queue_trial(total: int, batched: bool) -> float:
    queue: Any = _CTX.Queue(maxsize=4096)
    data = _records(total)
    return _queue_trial(queue.put, queue.get, data, total, batched)


def faster_fifo_trial(total: int, batched: bool) -> float:
    import faster_fifo  # type: ignore[import-not-found]  # no type information

    queue = faster_fifo.Queue(max_size_bytes=8 * 1024 * 1024)
    data = _records(total)
    return _queue_trial(queue.put, queue.get, data, total, batched)


def _queue_trial(
    put: Callable[[bytes], None], get: Callable[..., bytes], data: np.ndarray, total: int,
    batched: bool,
) -> float:
    def reader(conn: Connection, n: int) -> None:
        def body() -> None:
            conn.send("ready")
            expected = 0
            while expected < n:
                expected = _check(np.frombuffer(get(timeout=30), dtype=TICK_DTYPE), expected)
            conn.send(time.monotonic_ns())
        _report(conn, body)

    step = BATCH if batched else 1

    def write(n: int) -> None:
        for start in range(0, n, step):
            put(data[start:start + step].tobytes())

    return _run(reader, write, total)


# -- ZeroMQ PUSH/PULL over ipc:// ----------------------------------------------------------
def zmq_trial(total: int, batched: bool) -> float:
    import zmq

    directory = tempfile.mkdtemp(prefix="bench-zmq-")
    address = f"ipc://{directory}/pushpull"
    data = _records(total)

    def reader(conn: Connection, n: int) -> None:
        context = zmq.Context()
        pull = context.socket(zmq.PULL)
        pull.bind(address)

        def body() -> None:
            conn.send("ready")
            expected = 0
            while expected < n:
                expected = _check(np.frombuffer(pull.recv(copy=True), dtype=TICK_DTYPE),
                                  expected)
            conn.send(time.monotonic_ns())
        _report(conn, body)
        context.destroy(linger=0)

    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 100_000)
    step = BATCH if batched else 1

    def write(n: int) -> None:
        push.connect(address)
        send = push.send
        for start in range(0, n, step):
            send(data[start:start + step].tobytes(), copy=True)

    try:
        return _run(reader, write, total)
    finally:
        context.destroy(linger=0)
        Path(directory, "pushpull").unlink(missing_ok=True)
        Path(directory).rmdir()


TRANSPORTS: Final[dict[str, tuple[Callable[[int, bool], float], int]]] = {
    # name -> (trial, records per single-record trial at full size)
    "shm ring": (ring_trial, 400_000),
    "ZeroMQ PUSH/PULL ipc": (zmq_trial, 150_000),
    "multiprocessing.Queue": (mp_queue_trial, 30_000),
    "faster-fifo": (faster_fifo_trial, 30_000),
}
# Transports whose library is only in the dev extra: (module imported, distribution name).
OPTIONAL_LIBRARIES: Final[dict[str, tuple[str, str]]] = {"faster-fifo": ("faster_fifo",
                                                                         "faster-fifo")}


def unavailable(transport: str) -> str | None:
    """Why ``transport`` cannot be measured here (its optional library does not import), or
    None if it can."""
    if transport not in OPTIONAL_LIBRARIES:
        return None
    module, distribution = OPTIONAL_LIBRARIES[transport]
    try:
        importlib.import_module(module)
    except ImportError:
        return (f"skipped: {distribution} is not installed (dev extra only: "
                "pip install -e '.[dev]')")
    return None
