"""Kill the ledger again and again while the pipeline trades: nothing lost, nothing doubled.

The four processes run standalone (as under supervisor). The ledger is SIGKILLed at random
moments, which lands in the middle of group commits, and restarted each time. After an
orderly stop, every intent the strategy sent is exactly one order in the ledger, every fill
the executor reported is exactly one fill row, and the ledger is consistent.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

from harness import (
    assert_ledger_consistent,
    count,
    final_counters,
    kill_leftovers,
    pipeline_env,
    query,
    start_process,
    stop_in_order,
)
from testkit import eventually

from pipeline.config import PROCESSES


def _fills(database: Path) -> int:
    return count(database, "SELECT count(*) FROM fills")


def test_ledger_killed_mid_commit_loses_and_doubles_nothing(tmp_path: Path,
                                                            shm_dir: Path) -> None:
    data_dir = tmp_path / "var"
    env = pipeline_env(shm_dir, PIPELINE_CHILD="1", PIPELINE__INGEST__RATE_HZ="5000",
                       PIPELINE__STRATEGY__PARAMS="{ fast = 2, slow = 4, quantity = 1.0, "
                                                  "bar_s = 0.0 }")
    database = data_dir / "ledger-paper.sqlite"
    procs = {name: start_process(name, "--data-dir", str(data_dir), env=env)
             for name in PROCESSES}
    rng = random.Random(7)
    kills = 0
    try:
        eventually(lambda: _fills(database) > 0, timeout_s=30, message="first fill")
        for _ in range(15):
            target = _fills(database) + 1
            eventually(lambda: _fills(database) >= target, timeout_s=30,  # noqa: B023
                       interval_s=rng.uniform(0.01, 0.1), message="ledger commits again")
            procs["ledger"].send_signal(signal.SIGKILL)
            procs["ledger"].wait(timeout=10)
            kills += 1
            procs["ledger"] = start_process("ledger", "--data-dir", str(data_dir), env=env)
        # Stop only once the last ledger has installed its signal handlers and committed.
        target = _fills(database) + 1
        eventually(lambda: _fills(database) >= target, timeout_s=30, message="ledger is back")
        stop_in_order(procs)
    finally:
        kill_leftovers(procs.values())
    assert kills == 15
    strategy = final_counters(data_dir / "logs" / "strategy.log")
    executor = final_counters(data_dir / "logs" / "executor.log")
    orders = query(database, "SELECT count(*) FROM orders")[0][0]
    assert orders == strategy["intents"]
    assert orders == int(str(executor["fills"])) + int(str(executor["rejects"]))
    assert query(database, "SELECT count(*) FROM fills")[0][0] == executor["fills"]
    assert_ledger_consistent(database)
