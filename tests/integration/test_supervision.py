"""`pipeline run` notices a dead or hung child, stops the rest and exits non-zero."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
from harness import pipeline_cmd, pipeline_env
from testkit import eventually


def _child(run: subprocess.Popen[str], name: str) -> psutil.Process:
    found: list[psutil.Process] = []

    def child_is_up() -> bool:
        found[:] = [p for p in psutil.Process(run.pid).children()
                    if name in p.cmdline()[3:4]]
        return bool(found)

    eventually(child_is_up, timeout_s=30, message=f"{name} started")
    return found[0]


def _start_run(data_dir: Path, shm_dir: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(pipeline_cmd("run", "--data-dir", str(data_dir)),
                            env=pipeline_env(shm_dir, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _all_stopped(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in pids)


def test_a_child_that_dies_stops_the_run_with_an_error(tmp_path: Path, shm_dir: Path) -> None:
    run = _start_run(tmp_path / "var", shm_dir)
    try:
        ingest = _child(run, "ingest")  # the last one started: all four are up
        others = [p.pid for p in psutil.Process(run.pid).children()]
        _child(run, "strategy").send_signal(signal.SIGKILL)
        _out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1
    assert "strategy died unexpectedly" in err
    assert ingest.pid in others
    eventually(lambda: _all_stopped(others), timeout_s=10, message="no orphans left")


def test_a_hung_child_is_reported_then_stopped_at_the_hang_timeout(tmp_path: Path,
                                                                  shm_dir: Path) -> None:
    run = _start_run(tmp_path / "var", shm_dir, PIPELINE__RUN__HEARTBEAT_TIMEOUT_S="1.0",
                     PIPELINE__RUN__HANG_TIMEOUT_S="3.0", PIPELINE__RUN__STOP_TIMEOUT_S="3.0")
    try:
        _child(run, "ingest")
        executor = _child(run, "executor")
        executor.send_signal(signal.SIGSTOP)  # alive but hung
        _out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1
    silent, hung = err.index("executor has not heartbeated"), err.index("(hung)")
    assert silent < hung  # reported first, declared hung only at run.hang_timeout_s
    assert "executor stopped heartbeating (hung)" in err
