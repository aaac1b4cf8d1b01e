"""The disk under the ledger fills up while trading: nothing is lost, new orders stop.

The database lives on a real 16 MiB tmpfs (mounted by the test, so it needs root or
CAP_SYS_ADMIN); a ballast file fills it while the pipeline trades, so SQLite's commits fail
with SQLITE_FULL exactly as on a full production disk. Deleting the ballast is "space
returns". Checked: the failure is counted, logged and published; the trading state says
``ledger_stalled`` within the stall threshold, so the strategy withholds new intents (and
the executor would reject any that arrive); the ledger catches up; every intent is exactly
one order, every fill one fill row, and the ledger is consistent.
"""

from __future__ import annotations

import errno
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    assert_ledger_consistent,
    count,
    final_counters,
    kill_leftovers,
    log_events,
    pipeline_env,
    start_process,
    stop_in_order,
)
from testkit import eventually

from pipeline.config import PROCESSES


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                           str(mount_point)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(disk: Path) -> Path:
    """Write a ballast file until the file system says ENOSPC."""
    ballast = disk / "ballast"
    chunk = b"\0" * 65536
    # Unbuffered: a buffered file would retry the failed tail of a chunk on close and
    # raise ENOSPC out of the with statement.
    with ballast.open("wb", buffering=0) as handle, \
            pytest.raises(OSError, match="No space") as raised:  # noqa: PT012
        while True:
            handle.write(chunk)
    assert raised.value.errno == errno.ENOSPC, raised.value
    return ballast


def _metric(run_dir: Path, process: str, name: str) -> float:
    port = int((run_dir / f"{process}.metrics-port").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def _trading_again(log_file: Path) -> bool:
    """The executor logged trading on again after it logged the stall."""
    reasons = [e.get("reasons") for e in log_events(log_file, "executor.trading_state")]
    stalled = [i for i, r in enumerate(reasons) if r and "ledger_stalled" in r]
    return bool(stalled) and [] in reasons[stalled[0]:]


def test_full_disk_stops_new_orders_and_loses_nothing(tmp_path: Path, shm_dir: Path,
                                                      small_disk: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    database = data_dir / "ledger-paper.sqlite"
    database.symlink_to(small_disk / "ledger.sqlite")  # SQLite puts -wal/-shm beside the target
    logs = data_dir / "logs"
    env = pipeline_env(shm_dir, PIPELINE_CHILD="1", PIPELINE__INGEST__RATE_HZ="2000",
                       PIPELINE__STRATEGY__PARAMS="{ fast = 2, slow = 4, quantity = 1.0, "
                                                  "bar_s = 0.0 }",
                       PIPELINE__LEDGER__STALL_THRESHOLD_S="0.5",
                       PIPELINE__LEDGER__COMMIT_RETRY_MAX_S="0.2")
    procs = {name: start_process(name, "--data-dir", str(data_dir), env=env)
             for name in PROCESSES}
    try:
        eventually(lambda: count(database, "SELECT count(*) FROM fills") > 0, timeout_s=30,
                   message="first fill")
        ballast = _fill(small_disk)
        eventually(lambda: bool(log_events(logs / "ledger.log", "ledger.commit_stalled")),
                   timeout_s=60, interval_s=0.05, message="ledger reports the stall")
        eventually(lambda: any("ledger_stalled" in e.get("reasons", []) for e in
                               log_events(logs / "executor.log", "executor.trading_state")),
                   timeout_s=10, message="executor stops new orders")
        assert _metric(data_dir / "run", "ledger", "pipeline_ledger_commit_failures_total") > 0
        assert _metric(data_dir / "run", "ledger", "pipeline_ledger_commit_stalled") == 1
        # The disk stays full until an intent has met the stall: a window of a few hundred
        # milliseconds may hold no intent at all (50 orders/s at most, none while one works).
        eventually(lambda: _metric(data_dir / "run", "strategy",
                                   'pipeline_strategy_intents_withheld_total'
                                   '{reason="ledger_stalled"}') > 0,
                   timeout_s=30, interval_s=0.05, message="an intent held back by the stall")
        ballast.unlink()  # space returns
        eventually(lambda: bool(log_events(logs / "ledger.log", "ledger.commit_recovered")),
                   timeout_s=30, interval_s=0.05, message="ledger commits again")
        eventually(lambda: _trading_again(logs / "executor.log"), timeout_s=10,
                   message="executor sends orders again")
        filled = count(database, "SELECT count(*) FROM fills")
        eventually(lambda: count(database, "SELECT count(*) FROM fills") > filled,
                   timeout_s=30, message="trading resumes after the stall")
        stop_in_order(procs)
    finally:
        kill_leftovers(procs.values())
    strategy = final_counters(logs / "strategy.log")
    executor = final_counters(logs / "executor.log")
    assert count(database, "SELECT count(*) FROM orders") == strategy["intents"]
    assert count(database, "SELECT count(*) FROM fills") == executor["fills"]
    assert strategy["withheld"] > 0, "no intent was held back while the ledger was stalled"
    assert_ledger_consistent(database)
