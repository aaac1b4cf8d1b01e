"""Sections c and e: the real four-process pipeline, its tick-to-order latency and memory.

``pipeline run`` is started as a subprocess with a synthetic feed at a fixed tick rate and
the built-in ``ema_cross`` strategy tuned to trade often (fast 2, slow 4), the ledger
committing every report. Latency is read back from the ledger: ``orders.tick_to_order_ns``
is the executor's send stamp minus the ingest stamp. The first second is warm-up; the rest
is cut into equal time windows, one trial each. Peak RSS (``VmHWM``) of every child is read
from /proc while it runs, and the whole pipeline's peak is the largest sum of the four RSS
sampled at once.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import psutil

from pipeline.bench.stats import latency_percentiles_us
from pipeline.config import PROCESSES, PipelineConfig, load_config

WARMUP_NS: Final = 1_000_000_000
_SAMPLE_S: Final = 0.1


@dataclass
class LiveResult:
    """One ``pipeline run``: latency per window, order count, memory in MiB."""

    windows: list[dict[str, float]]
    orders: int
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    pipeline_peak_rss_mib: float = 0.0


def live_env(shm_dir: Path, rate_hz: float) -> dict[str, str]:
    """The environment ``pipeline run`` gets here: synthetic feed, tuned strategy and risk."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE")}
    env.update({
        "PIPELINE__INGEST__FEED": '"synthetic"',
        "PIPELINE__INGEST__RATE_HZ": str(rate_hz),
        "PIPELINE__STRATEGY__PARAMS": "{ fast = 2, slow = 4, quantity = 1.0, bar_s = 0.0 }",
        "PIPELINE__RISK__MAX_ORDERS_PER_S": "100000",
        "PIPELINE__METRICS__PORTS": "{ ingest = 0, strategy = 0, executor = 0, ledger = 0 }",
        "PIPELINE__RINGS__SHM_DIR": f'"{shm_dir}"',
    })
    return env


def live_config(data_dir: Path, rate_hz: float) -> PipelineConfig:
    """The configuration the run started with :func:`live_env` loads (with ``data_dir``)."""
    return load_config(environ=live_env(data_dir, rate_hz),
                       overrides={"data_dir": str(data_dir)})


def run_live(rate_hz: float, duration_s: float, windows: int) -> LiveResult:
    """Run the pipeline for warm-up plus ``duration_s`` of trading; see the module doc."""
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    shm = Path(tempfile.mkdtemp(prefix="bench-live-", dir="/dev/shm"))
    try:
        data_dir = work / "data"
        database = data_dir / "ledger-paper.sqlite"
        cmd = [sys.executable, "-m", "pipeline", "run", "--data-dir", str(data_dir)]
        proc = subprocess.Popen(cmd, env=live_env(shm, rate_hz), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peaks, whole = _watch(proc, database, WARMUP_NS / 1e9 + duration_s + 0.3)
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"pipeline run failed ({proc.returncode}): "
                               f"{stderr.decode(errors='replace')[-2000:]}")
        send_ns, latency_ns = read_orders(database)
        return LiveResult(latency_windows(send_ns, latency_ns, windows), len(latency_ns), peaks,
                          whole)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


def _watch(proc: subprocess.Popen[bytes], database: Path,
           trading_s: float) -> tuple[dict[str, float], float]:
    """Sample memory until ``trading_s`` after the first order, then stop the run (SIGINT)."""
    launcher = psutil.Process(proc.pid)
    peaks: dict[str, float] = {}
    whole = 0.0
    first_order_at: float | None = None
    deadline = time.monotonic() + 60 + trading_s  # start-up is seconds; never hang
    while proc.poll() is None and time.monotonic() < deadline:
        total = 0.0
        for child in launcher.children():
            try:
                name = next((n for n in PROCESSES if n in child.cmdline()), None)
                if name is None:
                    continue
                rss, hwm = _memory_mib(child.pid)
            except (psutil.Error, OSError):
                continue
            peaks[name] = max(peaks.get(name, 0.0), hwm)
            total += rss
        whole = max(whole, total)
        if first_order_at is None and _has_orders(database):
            first_order_at = time.monotonic()
        if first_order_at is not None and time.monotonic() - first_order_at >= trading_s:
            break
        time.sleep(_SAMPLE_S)
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT: the launcher drains every process in order
    return peaks, whole


def _memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process from /proc, MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def _has_orders(database: Path) -> bool:
    if not database.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.1)
        try:
            return conn.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def read_orders(database: Path) -> tuple[np.ndarray, np.ndarray]:
    """(send_ns, tick_to_order_ns) of every order sent and not rejected, by send time."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT send_ns, tick_to_order_ns FROM orders WHERE send_ns > 0 "
                            "AND status != 'rejected' ORDER BY send_ns").fetchall()
    finally:
        conn.close()
    table = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return table[:, 0], table[:, 1]


def latency_windows(send_ns: np.ndarray, latency_ns: np.ndarray,
                    count: int) -> list[dict[str, float]]:
    """Per-window latency percentiles after the warm-up (``send_ns`` ascending)."""
    if send_ns.size == 0:
        return []
    steady = send_ns >= send_ns[0] + WARMUP_NS
    send_ns, latency_ns = send_ns[steady], latency_ns[steady]
    if send_ns.size == 0:
        return []
    edges = np.linspace(send_ns[0], send_ns[-1] + 1, count + 1)
    which = np.searchsorted(edges, send_ns, side="right") - 1
    return [latency_percentiles_us(latency_ns[which == i]) for i in range(count)
            if np.any(which == i)]
