"""A child's check of its launcher, and the error line ``pipeline run`` shows for a child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.logs import last_error

_FOLLOW = ("import os, sys; from pipeline.lineage import follow_launcher; "
           "print(follow_launcher({'PIPELINE_LAUNCHER_PID': sys.argv[1]}))")


def _follow(claimed_parent: str) -> str:
    # In a child process: PR_SET_PDEATHSIG must not be set on the test runner itself.
    return subprocess.run([sys.executable, "-c", _FOLLOW, claimed_parent], capture_output=True,
                          text=True, timeout=30, check=True).stdout.strip()


def test_a_child_knows_whether_its_launcher_is_still_its_parent() -> None:
    assert _follow(str(os.getpid())) == "True"
    assert _follow("1") == "False"  # the launcher died and the child was reparented
    assert _follow("garbage") == "False"


def _line(pid: int, level: str, message: str, **extra: object) -> str:
    return json.dumps({"level": level, "message": message, "pid": pid, **extra})


def test_the_last_error_of_that_process_is_found(tmp_path: Path) -> None:
    log = tmp_path / "ledger.log"
    log.write_text("\n".join([
        _line(7, "ERROR", "an error of the previous run"),
        _line(8, "ERROR", "cannot start: port in use"),
        _line(8, "INFO", "stopped"),
        "not json {",
    ]) + "\n")
    assert last_error(log, 8) == "cannot start: port in use"
    assert last_error(log, 7) == "an error of the previous run"
    assert last_error(log, 9) is None
    assert last_error(tmp_path / "missing.log", 8) is None


def test_a_crash_shows_the_last_line_of_its_traceback(tmp_path: Path) -> None:
    log = tmp_path / "ledger.log"
    trace = "Traceback (most recent call last):\n  File \"x.py\"\nValueError: bad state"
    log.write_text(_line(8, "ERROR", "unexpected failure", exc_info=trace) + "\n")
    assert last_error(log, 8) == "unexpected failure: ValueError: bad state"
