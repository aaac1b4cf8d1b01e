"""The pipeline under a real supervisord with deploy/supervisor/supervisord.conf."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness import assert_ledger_consistent, count, log_events
from supervised import PROGRAMS, supervised
from testkit import eventually

FILLS = "SELECT count(*) FROM fills"

CONFIG = """
[risk]
max_orders_per_s = 1000.0
price_band_bps = 100.0
"""


def test_supervised_pipeline_trades_reloads_and_survives_a_kill(tmp_path: Path,
                                                                shm_dir: Path) -> None:
    # max_orders_per_s lives in the file (not the environment) so a reload can change risk.
    with supervised(tmp_path, shm_dir, CONFIG, drop=("PIPELINE__RISK__MAX_ORDERS_PER_S",)) as sup:
        database = sup.data_dir / "ledger-paper.sqlite"
        logs = sup.data_dir / "logs"

        # All four reach RUNNING (each stayed up startsecs) and the pipeline trades.
        eventually(lambda: set(sup.states().values()) == {"RUNNING"}
                   and len(sup.states()) == 4, timeout_s=60, interval_s=0.5,
                   message="all four programs RUNNING")
        eventually(lambda: count(database, FILLS) > 0, timeout_s=30, interval_s=0.2,
                   message="fills in the ledger")

        # SIGHUP through supervisor reloads the strategy's config from the edited file.
        sup.config.write_text(CONFIG.replace("price_band_bps = 100.0", "price_band_bps = 150.0"))
        assert sup.ctl("signal", "HUP", "pipeline:strategy").returncode == 0
        eventually(lambda: any(e.get("applied") == ["risk"] for e in
                               log_events(logs / "strategy.log", "config.reloaded")),
                   timeout_s=15, interval_s=0.1, message="strategy logged config.reloaded")

        # SIGKILL of the executor (where money moves): supervisor restarts it, trading resumes.
        old_pid = sup.pid("executor")
        os.kill(old_pid, signal.SIGKILL)
        eventually(lambda: sup.pid("executor") not in (0, old_pid)
                   and sup.states().get("executor") == "RUNNING", timeout_s=60, interval_s=0.5,
                   message="executor restarted and RUNNING")
        fills_after_restart = count(database, FILLS)
        eventually(lambda: count(database, FILLS) > fills_after_restart, timeout_s=30,
                   interval_s=0.2, message="fills after the restart")

        # An orderly stop of the group (reverse priority: ledger last) leaves a consistent ledger.
        stopped = sup.ctl("stop", "pipeline:*")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert set(sup.states().values()) == {"STOPPED"}, sup.states()
    assert_ledger_consistent(database)
    for program in PROGRAMS:
        assert log_events(logs / f"{program}.log", "process.stopped"), program
        assert (logs / f"{program}.stderr.log").read_text() == "", "only JSON log files"
