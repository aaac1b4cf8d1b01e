"""What the ZeroMQ comparisons of section c share: the paced tick source, reading every
message already queued on a socket, and starting and stopping the stage processes.

Both :mod:`.zmq_chain` and :mod:`.zmq_pipeline` run each stage in its own forked process
that blocks in ZeroMQ's own ``poll``/``recv`` (no spinning) and moves the pipeline's numpy
records as raw bytes; an empty message tells the next stage that its upstream has stopped.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

import numpy as np
import zmq

from pipeline.bench.throughput import _CTX
from pipeline.ingest.feed import Feed

STOP: Final = b""  # the last message a stage sends downstream
READY: Final = "ready"
_START_TIMEOUT_S: Final = 30.0
_JOIN_TIMEOUT_S: Final = 5.0


def pace_ticks(feed: Feed, send: Callable[[np.ndarray], None], duration_s: float,
               validate: Callable[[np.ndarray], np.ndarray] | None = None) -> int:
    """Ingest's loop: poll ``feed`` until ``duration_s`` has passed, stamp each batch with
    its sequence and ``ingest_ns`` right before ``send``, sleep until the next tick is due.
    Returns the ticks sent."""
    end = time.monotonic_ns() + int(duration_s * 1e9)
    seq = 0
    while (now := time.monotonic_ns()) < end:
        polled = feed.poll(now, 256)
        ticks = validate(polled) if validate is not None else polled
        if len(ticks):
            ticks["seq"] = np.arange(seq, seq + len(ticks), dtype=np.uint64)
            ticks["ingest_ns"] = time.monotonic_ns()
            send(ticks)
            seq += len(ticks)
            continue
        due = feed.next_due_ns()
        wait_ns = (due if due is not None else end) - time.monotonic_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
    return seq


def receive_queued(socket: zmq.Socket[bytes], dtype: np.dtype[Any],
                   limit: int = 4096) -> tuple[np.ndarray, bool]:
    """The first message (waiting for it) and every one already queued behind it, up to
    ``limit`` records, as one array, and whether the upstream's STOP was among them.

    Taking what is queued in one go is what a ring reader does (it reads all that is
    available), so a backlog costs ZeroMQ no more decisions than it costs the ring.
    """
    parts: list[bytes] = []
    count = 0
    stopped = False
    flags = 0
    while count < limit:
        try:
            message = socket.recv(flags)
        except zmq.Again:
            break
        if message == STOP:
            stopped = True
            break
        parts.append(message)
        count += len(message) // dtype.itemsize
        flags = zmq.NOBLOCK
    if len(parts) == 1:
        return np.frombuffer(parts[0], dtype=dtype), stopped
    return np.frombuffer(b"".join(parts), dtype=dtype), stopped


def subscribe(context: zmq.Context[zmq.Socket[bytes]], address: str) -> zmq.Socket[bytes]:
    """A SUB socket on ``address`` taking every message (the lossy tick fan-out)."""
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(address)
    return socket


@contextmanager
def ipc_directory(prefix: str) -> Iterator[Path]:
    """A private directory for the ``ipc://`` endpoints (and any files) of one run."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Stages:
    """The stage processes of one run: each gets a pipe, says READY once its sockets are
    up, and is joined (killed if it hangs) when the run ends."""

    def __init__(self) -> None:
        self._procs: list[BaseProcess] = []

    def start(self, target: Callable[..., None], *args: Any) -> Connection:
        """Fork ``target(conn, *args)`` and wait for its READY; the parent's end of the pipe."""
        parent, child = _CTX.Pipe()
        proc = _CTX.Process(target=target, args=(child, *args), daemon=True)
        proc.start()
        self._procs.append(proc)
        if not parent.poll(_START_TIMEOUT_S) or parent.recv() != READY:
            raise RuntimeError(f"stage {target.__name__} failed to start")
        return parent

    def close(self) -> None:
        for proc in self._procs:
            proc.join(_JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join(_JOIN_TIMEOUT_S)

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def result(conn: Connection, timeout_s: float, what: str) -> Any:
    """The one object a stage sends back at its end; RuntimeError if it does not come."""
    if not conn.poll(timeout_s):
        raise RuntimeError(f"{what} did not finish within {timeout_s} s")
    return conn.recv()
