"""SIGKILL random processes of a trading pipeline 100 times: nothing lost, nothing doubled.

The four processes run standalone (as under supervisor) and each kill is followed by a
restart, at random moments: mid group commit, mid start-up, mid ring write. Afterwards:
every intent the strategy incarnations published (the intents ring's write sequence, which
outlives a crashed writer) is exactly one order with a final state; every fill is booked
once and positions and balances equal the sum of the signed fills; integrity_check is ok;
the ledger consumed every report the executors produced (its stored ring cursor equals the
reports ring's write sequence).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from harness import (
    assert_ledger_consistent,
    count,
    final_counters,
    kill_leftovers,
    log_events,
    pipeline_env,
    start_process,
)
from testkit import eventually

from pipeline.config import PROCESSES
from pipeline.ring import inspect_segment

KILLS = 100


def _write_seq(shm_dir: Path, suffix: str) -> int:
    (path,) = shm_dir.glob(f"*-{suffix}")
    info = inspect_segment(path)
    assert info is not None
    return info.write_seq


def test_random_sigkills_lose_and_double_nothing(tmp_path: Path, shm_dir: Path) -> None:
    data_dir = tmp_path / "var"
    env = pipeline_env(shm_dir, PIPELINE_CHILD="1", PIPELINE__INGEST__RATE_HZ="3000",
                       PIPELINE__STRATEGY__PARAMS="{ fast = 2, slow = 4, quantity = 1.0, "
                                                  "bar_s = 0.0 }")
    database = data_dir / "ledger-paper.sqlite"
    procs = {name: start_process(name, "--data-dir", str(data_dir), env=env, quiet=True)
             for name in PROCESSES}
    rng = random.Random(20261125)
    killed: dict[str, int] = dict.fromkeys(PROCESSES, 0)
    try:
        eventually(lambda: count(database, "SELECT count(*) FROM fills") > 0, timeout_s=30,
                   message="first fill")
        for _ in range(KILLS):
            # A random moment, not a synchronisation: the sleep IS the chaos.
            name = rng.choice(PROCESSES)
            time.sleep(rng.uniform(0.02, 0.4))
            procs[name].send_signal(signal.SIGKILL)
            procs[name].wait(timeout=10)
            killed[name] += 1
            procs[name] = start_process(name, "--data-dir", str(data_dir), env=env, quiet=True)
        logs = data_dir / "logs"
        eventually(lambda: all(any(e.get("pid") == procs[name].pid for e in
                                   log_events(logs / f"{name}.log", "process.started"))
                               for name in PROCESSES),
                   timeout_s=60, message="every restarted process is running")
        filled = count(database, "SELECT count(*) FROM fills")
        eventually(lambda: count(database, "SELECT count(*) FROM fills") > filled,
                   timeout_s=60, message="trading continues after the last kill")
        procs["ingest"].send_signal(signal.SIGTERM)
        assert procs["ingest"].wait(timeout=60) == 0
        # The strategy may still hold a backlog of ticks (a restarted one resumes at its
        # cursor): it decides on all of them while it stops, then logs the intents ring's
        # write sequence, which counts the intents of every run of the strategy.
        procs["strategy"].send_signal(signal.SIGTERM)
        assert procs["strategy"].wait(timeout=60) == 0
        intents_published = final_counters(logs / "strategy.log")["intents_write_seq"]
        procs["executor"].send_signal(signal.SIGTERM)
        assert procs["executor"].wait(timeout=60) == 0
        eventually(lambda: count(database, "SELECT count(*) FROM orders")
                   >= intents_published, timeout_s=60, message="ledger books every order")
        reports_written = _write_seq(shm_dir, "reports") if list(shm_dir.glob("*-reports")) \
            else None
        procs["ledger"].send_signal(signal.SIGTERM)
        assert procs["ledger"].wait(timeout=60) == 0
    finally:
        kill_leftovers(procs.values())
    assert sum(killed.values()) == KILLS
    assert all(killed.values()), killed
    assert count(database, "SELECT count(*) FROM orders") == intents_published
    assert count(database, "SELECT count(DISTINCT client_order_id) FROM orders") == \
        intents_published
    if reports_written is not None:
        assert count(database, "SELECT cursor FROM ring_cursors WHERE ring LIKE '%reports'") \
            == reports_written
    assert_ledger_consistent(database)
