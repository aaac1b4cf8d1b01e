"""Section b: one-way latency of one ring hop at a fixed record rate.

A writer process publishes single records at ``rate_hz``, stamping each with
``time.monotonic_ns`` just before it publishes; a reader in another process takes the
difference when it has copied the record out. The reader waits the way the pipeline's
processes really wait (:class:`pipeline.wakeup.Waiter`: spin ``spin_us``, then sleep on the
FIFO doorbell that the writer rings only while the reader sleeps), or busy-polls for reference.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import ring
from pipeline.bench.throughput import _CTX
from pipeline.records import TICK_DTYPE
from pipeline.wakeup import BellRinger, Doorbell, Waiter


def hop_trial(rate_hz: float, duration_s: float, spin_us: int | None) -> np.ndarray:
    """Latencies (ns) of every record; ``spin_us`` None = busy-poll without ever sleeping."""
    shm = Path(tempfile.mkdtemp(prefix="bench-hop-", dir="/dev/shm"))
    spec = ring.RingSpec("hop", TICK_DTYPE, 65536, lossless=False, readers=("reader",))
    kwargs: dict[str, Any] = {"env": "bench", "run_id": uuid.uuid4(), "shm_dir": shm}
    total = int(rate_hz * duration_s)
    parent, child = _CTX.Pipe()
    proc = _CTX.Process(target=_reader, args=(child, spec, kwargs, shm, total, spin_us),
                        daemon=True)
    proc.start()
    try:
        if parent.recv() != "ready":
            raise RuntimeError("hop reader failed to start")
        ringer = BellRinger(shm)
        writer = ring.RingWriter(spec, ring_bell=ringer, **kwargs)
        _paced_writes(writer, total, rate_hz)
        if not parent.poll(30):
            raise RuntimeError("hop reader did not finish")
        latency: np.ndarray = parent.recv()
        writer.close()
        ringer.close()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        for path in shm.iterdir():
            path.unlink()
        shm.rmdir()
    return latency


def _paced_writes(writer: ring.RingWriter, total: int, rate_hz: float) -> None:
    """Publish ``total`` records on a fixed schedule, sleeping between them as ingest does."""
    interval_ns = int(1e9 / rate_hz)
    start = time.monotonic_ns()
    write_one, clock, sleep = writer.write_one, time.monotonic_ns, time.sleep
    for seq in range(total):
        due = start + seq * interval_ns
        now = clock()
        if due > now:
            sleep((due - now) / 1e9)
        write_one(seq, clock(), 0, 150.0, 0.0, 1, 0, 0)


def _reader(conn: Connection, spec: ring.RingSpec, kwargs: dict[str, Any], shm: Path,  # noqa: PLR0917
            total: int, spin_us: int | None) -> None:
    reader = ring.RingReader(spec, "reader", **kwargs)
    doorbell = Doorbell(shm, "reader")
    waiter = Waiter(doorbell, [reader], spin_us=spin_us or 0, max_block_s=0.05)
    latency = np.empty(total, dtype=np.int64)
    seen = 0
    conn.send("ready")
    deadline = time.monotonic() + total / 1000 + 30  # never hang on a lost record
    while seen < total and time.monotonic() < deadline:
        batch = reader.read(4096)
        if len(batch):
            now = time.monotonic_ns()
            n = min(len(batch), total - seen)
            latency[seen:seen + n] = now - batch["ingest_ns"][:n]
            seen += n
        elif spin_us is not None:
            waiter.wait()
    conn.send(latency[:seen])
    doorbell.close()
    reader.close()
