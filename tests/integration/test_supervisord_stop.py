"""The ledger stops last under a real supervisord, though supervisord signals all four at once.

``supervisorctl stop pipeline:*``, ``supervisorctl restart pipeline:*`` and SIGTERM to
supervisord each send SIGTERM to the whole group together. The pipeline trades on the paper
venue at 2,000 ticks/s when it is stopped; afterwards every order the executor reported is
booked, no report waits unread in the reports ring (the ledger's cursor is at the write
sequence), no intent in the intents ring, and the ledger logged that the executor had
finished before it stopped itself. A strategy stalled while the group is told to stop (a
host stall) decides on its backlog of ticks only after the executor and the ledger began
draining: its intents still become orders, and their reports are still booked.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from harness import assert_ledger_consistent, count, log_events
from supervised import BIN, CONF, PROGRAMS, Supervised, supervised
from testkit import eventually

from pipeline import ring

FILLS = "SELECT count(*) FROM fills"


def _trading(sup: Supervised, database: Path, more_than: int) -> None:
    eventually(lambda: set(sup.states().values()) == {"RUNNING"} and len(sup.states()) == 4,
               timeout_s=60, interval_s=0.2, message="all four programs RUNNING")
    eventually(lambda: count(database, FILLS) > more_than, timeout_s=60, interval_s=0.1,
               message=f"more than {more_than} fills in the ledger")


def _stop_group(sup: Supervised) -> None:
    stopped = sup.ctl("stop", "pipeline:*")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert set(sup.states().values()) == {"STOPPED"}, sup.states()


def _exits(logs: Path, program: str) -> list[dict[str, object]]:
    return log_events(logs / f"{program}.log", "process.stopped")


def _assert_ledger_stopped_last(logs: Path, generations: int) -> None:
    """Each run's ledger waited for its executor to finish, then stopped after it.

    Finished is either "closed" (the executor's last act on the ring: it unlinks it once
    fully read, just before it logs its own stop) or "exited" (its stop line came first).
    """
    executor_drains = log_events(logs / "executor.log", "process.draining")
    executor, ledger = _exits(logs, "executor"), _exits(logs, "ledger")
    assert len(executor) == len(ledger) == len(executor_drains) == generations
    waits = log_events(logs / "ledger.log", "process.upstream_done")
    assert [w["outcome"] in ("closed", "exited") for w in waits] == [True] * generations, waits
    for program in PROGRAMS:
        assert [e["exit_code"] for e in _exits(logs, program)] == [0] * generations, program
    for drained, stopped, wait, ledger_stop in zip(executor_drains, executor, waits, ledger,
                                                   strict=True):
        # ISO 8601 UTC with milliseconds: the strings order as the instants do.
        assert str(stopped["time"]).endswith("Z")
        assert str(wait["time"]) >= str(drained["time"]), (wait, drained)
        if wait["outcome"] == "exited":
            assert str(wait["time"]) >= str(stopped["time"]), (wait, stopped)
        assert str(ledger_stop["time"]) >= str(wait["time"])


def _assert_everything_booked(database: Path, logs: Path, shm_dir: Path) -> None:
    """The executor's own counts (all its runs) equal the ledger's rows; the rings are read."""
    assert_ledger_consistent(database)
    finals = [e["final"] for e in _exits(logs, "executor")]
    assert all(isinstance(f, dict) for f in finals)
    fills = sum(int(f["fills"]) for f in finals if isinstance(f, dict))
    rejects = sum(int(f["rejects"]) for f in finals if isinstance(f, dict))
    assert count(database, FILLS) == fills
    assert count(database, "SELECT count(*) FROM orders") == fills + rejects
    for kind in ("reports", "intents"):  # absent: the writer closed it fully read, unlinked
        for path in shm_dir.glob(f"*-{kind}"):
            info = ring.inspect_segment(path)
            assert info is not None, path
            # The first declared reader is the system of record: the ledger, the executor.
            assert info.cursors[0] == info.write_seq, (kind, info)
    for program in PROGRAMS:
        assert (logs / f"{program}.stderr.log").read_text() == "", "only JSON log files"


@pytest.mark.parametrize("how", ["stop", "restart", "sigterm"])
def test_group_stop_books_every_report_of_the_executors_drain(tmp_path: Path, shm_dir: Path,
                                                              how: str) -> None:
    with supervised(tmp_path, shm_dir, "") as sup:
        database = sup.data_dir / "ledger-paper.sqlite"
        logs = sup.data_dir / "logs"
        _trading(sup, database, more_than=20)
        generations = 1
        if how == "stop":
            _stop_group(sup)
        elif how == "restart":
            old = {program: sup.pid(program) for program in PROGRAMS}
            restarted = sup.ctl("restart", "pipeline:*")
            assert restarted.returncode == 0, restarted.stdout + restarted.stderr
            eventually(lambda: all(sup.pid(p) not in (0, old[p]) for p in PROGRAMS),
                       timeout_s=60, interval_s=0.2, message="four new pids")
            _assert_ledger_stopped_last(logs, generations)
            _trading(sup, database, more_than=count(database, FILLS))
            _stop_group(sup)
            generations = 2
        else:
            sup.daemon.send_signal(signal.SIGTERM)
            assert sup.daemon.wait(timeout=90) == 0
    _assert_ledger_stopped_last(logs, generations)
    _assert_everything_booked(database, logs, shm_dir)


def _write_seq(shm_dir: Path, kind: str) -> int:
    info = ring.inspect_segment(next(shm_dir.glob(f"*-{kind}")))
    assert info is not None
    return info.write_seq


def _backlog(shm_dir: Path) -> int:
    """Ticks published that the strategy (the ticks ring's first reader) has not read."""
    info = ring.inspect_segment(next(shm_dir.glob("*-ticks")))
    return 0 if info is None else info.write_seq - info.cursors[0]


def test_a_stalled_strategy_holds_the_executor_which_holds_the_ledger(tmp_path: Path,
                                                                      shm_dir: Path) -> None:
    with supervised(tmp_path, shm_dir, "") as sup:
        database = sup.data_dir / "ledger-paper.sqlite"
        logs = sup.data_dir / "logs"
        _trading(sup, database, more_than=20)
        strategy = sup.pid("strategy")
        os.kill(strategy, signal.SIGSTOP)
        try:
            eventually(lambda: _backlog(shm_dir) >= 1000, timeout_s=30, interval_s=0.05,
                       message="ticks waiting for the stalled strategy")
            intents_before = _write_seq(shm_dir, "intents")
            stopping = subprocess.Popen([str(BIN / "supervisorctl"), "-c", str(CONF), "stop",
                                         "pipeline:*"], env=sup.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
            eventually(lambda: all(log_events(logs / f"{p}.log", "process.draining")
                                   for p in ("executor", "ledger")), timeout_s=30,
                       interval_s=0.02, message="executor and ledger draining")
        finally:
            os.kill(strategy, signal.SIGCONT)
        output, _ = stopping.communicate(timeout=90)
        assert stopping.returncode == 0, output
        assert set(sup.states().values()) == {"STOPPED"}, sup.states()
    # The strategy decided on its backlog while the executor and the ledger were draining.
    final = _exits(logs, "strategy")[-1]["final"]
    assert isinstance(final, dict)
    assert int(final["intents_write_seq"]) > intents_before, (final, intents_before)
    waits = log_events(logs / "executor.log", "process.upstream_done")
    assert [w["outcome"] for w in waits] in (["closed"], ["exited"]), waits
    _assert_ledger_stopped_last(logs, 1)
    _assert_everything_booked(database, logs, shm_dir)


def test_a_config_error_exits_once_with_its_reason_in_the_json_log(tmp_path: Path,
                                                                    shm_dir: Path) -> None:
    """Exit 2 is in exitcodes and startsecs is 0, so supervisord takes it as expected:
    EXITED, not restarted (not BACKOFF retries ending FATAL)."""
    with supervised(tmp_path, shm_dir, "[ledger]\ncommits_per_s = -5\n") as sup:
        logs = sup.data_dir / "logs"
        eventually(lambda: sup.states() == dict.fromkeys(PROGRAMS, "EXITED"), timeout_s=60,
                   interval_s=0.2, message="all four EXITED")
        daemon_log = (Path(sup.env["SUPERVISOR_DIR"]) / "supervisord.log").read_text()
    for program in PROGRAMS:
        assert daemon_log.count(f"spawned: '{program}'") == 1, daemon_log
        assert f"exited: {program} (exit status 2; expected)" in daemon_log, daemon_log
    for program in PROGRAMS:
        failed = log_events(logs / f"{program}.log", "process.start_failed")
        assert len(failed) == 1, (program, failed)  # started once, never again
        assert "commits_per_s = -5" in str(failed[0]["message"])
        assert str(failed[0]["time"]).endswith("Z")
        assert "commits_per_s = -5" in (logs / f"{program}.stderr.log").read_text()
