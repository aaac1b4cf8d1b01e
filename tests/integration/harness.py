"""Run the real pipeline as subprocesses and check what it left in the ledger."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.config import PROCESSES

FAST_TRADING = {
    # Fast enough to trade many times in a few seconds, on real replayed SOL prices.
    "PIPELINE__INGEST__RATE_HZ": "2000",
    "PIPELINE__STRATEGY__PARAMS": "{ fast = 5, slow = 20, quantity = 1.0, bar_s = 0.0 }",
    "PIPELINE__RISK__MAX_ORDERS_PER_S": "1000",
    "PIPELINE__METRICS__PORTS": "{ ingest = 0, strategy = 0, executor = 0, ledger = 0 }",
}


def pipeline_env(shm_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE")}
    env.update(FAST_TRADING)
    env["PIPELINE__RINGS__SHM_DIR"] = f'"{shm_dir}"'
    env.update(extra)
    return env


def pipeline_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def run_pipeline(data_dir: Path, env: dict[str, str], duration_s: float,
                 timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pipeline_cmd("run", "--data-dir", str(data_dir), "--duration",
                                       str(duration_s)), env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def start_process(*args: str, env: dict[str, str], quiet: bool = False
                  ) -> subprocess.Popen[bytes]:
    """One ``pipeline`` command in the background; ``quiet`` discards its stderr."""
    return subprocess.Popen(pipeline_cmd(*args), env=env, stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL if quiet else None)


def stop_in_order(procs: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM the four processes in reverse start order; each must drain and exit 0."""
    for name in reversed(PROCESSES):
        procs[name].send_signal(signal.SIGTERM)
        assert procs[name].wait(timeout=60) == 0, name


def kill_leftovers(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """No process outlives its test, whatever failed."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def count(database: Path, sql: str) -> int:
    """A one-number query; 0 while the ledger has not created its database or schema."""
    try:
        return int(str(query(database, sql)[0][0]))
    except sqlite3.OperationalError:
        return 0


def log_events(log_file: Path, event: str) -> list[dict[str, object]]:
    """The JSON log lines of one event, oldest first."""
    if not log_file.exists():
        return []
    lines = [json.loads(line) for line in log_file.read_text().splitlines()
             if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def final_counters(log_file: Path) -> dict[str, object]:
    """The counters a process logged when it stopped cleanly (its last ``process.stopped``)."""
    stopped = log_events(log_file, "process.stopped")
    assert stopped, f"{log_file} has no process.stopped line"
    assert stopped[-1]["exit_code"] == 0, stopped[-1]
    final = stopped[-1]["final"]
    assert isinstance(final, dict)
    return final


def query(database: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def assert_ledger_consistent(database: Path, initial_quote: float = 100_000.0) -> None:
    """Every invariant a consistent ledger must hold after a drained run."""
    assert query(database, "PRAGMA integrity_check") == [("ok",)]
    open_orders = query(database, "SELECT count(*) FROM orders WHERE status = 'new'")[0][0]
    assert open_orders == 0, f"{open_orders} orders without a final state"
    statuses = {row[0] for row in query(database, "SELECT DISTINCT status FROM orders")}
    assert statuses <= {"filled", "rejected", "cancelled"}, statuses
    orphans = query(database, "SELECT count(*) FROM fills f LEFT JOIN orders o "
                              "ON o.client_order_id = f.client_order_id WHERE o.id IS NULL")
    assert orphans[0][0] == 0, "fills without an order"
    filled_orders = query(database, "SELECT count(*) FROM orders WHERE status = 'filled'")[0][0]
    fills = query(database, "SELECT count(*) FROM fills")[0][0]
    assert filled_orders == fills, (filled_orders, fills)
    for symbol, position in query(database, "SELECT symbol, quantity FROM positions"):
        signed = query(database, "SELECT coalesce(sum(CASE side WHEN 'buy' THEN quantity "
                                 f"ELSE -quantity END), 0) FROM fills WHERE symbol = '{symbol}'")
        assert abs(float(position) - float(signed[0][0])) < 1e-9, (symbol, position, signed)
    cash_flow = query(database, "SELECT coalesce(sum(CASE side WHEN 'buy' THEN -quantity * price "
                                "ELSE quantity * price END) - sum(fee), 0) FROM fills")[0][0]
    latest = dict(query(database, "SELECT asset, amount FROM balances WHERE id IN "
                                  "(SELECT max(id) FROM balances GROUP BY asset)"))
    assert abs(float(latest["USDT"]) - (initial_quote + float(cash_flow))) < 1e-6, latest
    base = query(database, "SELECT coalesce(sum(CASE side WHEN 'buy' THEN quantity "
                           "ELSE -quantity END), 0) FROM fills")[0][0]
    assert abs(float(latest.get("SOL", 0.0)) - float(base)) < 1e-9, latest
