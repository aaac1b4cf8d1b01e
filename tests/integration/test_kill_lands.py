"""A kill always lands: through a locked database, a removed kill flag, planted files.

Real `pipeline run` (the launcher reports a process silent after run.heartbeat_timeout_s,
2 s), real `pipeline admin kill`, a real SQLite write lock held by another connection.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import log_events, pipeline_cmd, pipeline_env, query
from testkit import eventually, scratch_shm_dir

from pipeline.config import load_config

pytestmark = pytest.mark.slow


@dataclass
class Run:
    data_dir: Path
    shm_dir: Path
    env: dict[str, str]
    popen: subprocess.Popen[str]

    @property
    def database(self) -> Path:
        return self.data_dir / "ledger-paper.sqlite"

    @property
    def flag(self) -> Path:
        prefix = load_config(None, environ={}, overrides={
            "data_dir": str(self.data_dir)}).paths.ring_prefix
        return self.shm_dir / f"{prefix}-killswitch"

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(pipeline_cmd("admin", "--data-dir", str(self.data_dir), *args),
                              env=self.env, capture_output=True, text=True, timeout=60,
                              check=False)

    def status(self) -> dict[str, Any]:
        result = self.admin("status", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        body: dict[str, Any] = json.loads(result.stdout)
        return body

    def alive(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"pipeline run exited: {self.popen.communicate()[0]}")
        return True


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    with scratch_shm_dir() as shm_dir:
        # Hung at the first silent heartbeat timeout: the lock tests prove the ledger never
        # goes silent while another connection holds the write lock.
        env = pipeline_env(shm_dir, PIPELINE__RUN__HANG_TIMEOUT_S="2.0")
        data_dir = tmp_path / "var"
        popen = subprocess.Popen(pipeline_cmd("run", "--data-dir", str(data_dir)), env=env,
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        running = Run(data_dir, shm_dir, env, popen)
        try:
            def trading() -> bool:
                running.alive()
                result = running.admin("status", "--json")
                return result.returncode == 0 and \
                    json.loads(result.stdout)["executor"].get("orders", 0) > 0
            eventually(trading, timeout_s=90, interval_s=0.2, message="first orders")
            yield running
        finally:
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)
                try:
                    popen.communicate(timeout=90)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.communicate()


def _stop(run: Run) -> str:
    run.popen.send_signal(signal.SIGINT)
    output = run.popen.communicate(timeout=90)[0]
    assert run.popen.returncode == 0, output
    return output


def _orders_stop(run: Run, hold_s: float) -> None:
    """The executor says trading is off and sends nothing more while ticks keep coming."""
    eventually(lambda: run.status()["executor"]["trade_enabled"] is False, timeout_s=10,
               interval_s=0.05, message="executor sees trading disabled")
    before = run.status()
    started = time.monotonic()
    eventually(lambda: time.monotonic() - started > hold_s and
               run.status()["ingest"]["ticks"] > before["ingest"]["ticks"] + 1000,
               timeout_s=hold_s + 30, interval_s=0.2, message="ticks keep flowing")
    assert run.status()["executor"]["orders"] == before["executor"]["orders"]


def _trade_enabled(database: Path) -> str:
    (value,), = query(database, "SELECT value FROM config WHERE key = 'TRADE_ENABLED'")
    return str(value)


def test_a_kill_lands_while_another_connection_holds_the_write_lock(run: Run) -> None:
    assert _trade_enabled(run.database) == "true"
    lock = sqlite3.connect(run.database, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # e.g. a maintenance script, held far past 2 s
    locked_at = time.monotonic()
    try:
        result = run.admin("kill", "--reason", "lock-test")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "trading DISABLED" in result.stdout
        assert "not yet in the database" in result.stdout
        _orders_stop(run, hold_s=3.0)  # > run.heartbeat_timeout_s with the lock held
        assert time.monotonic() - locked_at > 3.0
        run.alive()  # the launcher did not declare the ledger hung
        ledger = run.status()["ledger"]
        assert ledger["state"] == "running"
        assert ledger["kill_switch_pending"] is True
        assert ledger["trade_enabled"] is False
        assert _trade_enabled(run.database) == "true"  # nothing written yet
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    eventually(lambda: _trade_enabled(run.database) == "false", timeout_s=15,
               interval_s=0.1, message="the disable reaches the database")
    (detail,), = query(run.database, "SELECT detail FROM audit_log WHERE "
                                     "action = 'kill_switch.set'")
    written = json.loads(str(detail))
    assert written["reason"] == "lock-test"
    assert written["written_after_s"] > 2.0
    assert run.status()["ledger"]["kill_switch_pending"] is False
    _stop(run)
    assert log_events(run.data_dir / "logs" / "ledger.log", "ledger.kill_switch_durable")


def test_a_kill_lands_after_the_kill_flag_was_removed(run: Run) -> None:
    run.flag.unlink()  # e.g. a second launcher cleaning up on its way out
    result = run.admin("kill", "--reason", "flag-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trading DISABLED" in result.stdout
    _orders_stop(run, hold_s=1.0)
    assert run.flag.exists()  # the ledger made a new one...
    assert run.flag.stat().st_mode & 0o777 == 0o600
    eventually(lambda: run.status()["executor"]["kill_flag"] == "ok", timeout_s=10,
               message="...and the executor reads it")
    assert run.status()["executor"]["trade_enabled"] is False
    assert _trade_enabled(run.database) == "false"
    _stop(run)
    assert log_events(run.data_dir / "logs" / "ledger.log", "ledger.kill_flag_replaced")


def _prefix(data_dir: Path) -> str:
    return load_config(None, environ={}, overrides={"data_dir": str(data_dir)}).paths.ring_prefix


def _plant(path: Path, size: int, mode: int, owner: int | None = None) -> None:
    path.write_bytes(bytes(size))
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner, owner)


@pytest.mark.parametrize(("name", "mode", "owner", "message"), [
    ("killswitch", 0o666, None, "has mode 0666"),
    ("reports", 0o666, None, "has mode 0666"),
    ("reports", 0o600, 65534, "owned by uid 65534"),
    ("killswitch", 0o600, 65534, "owned by uid 65534"),
])
def test_the_ledger_refuses_planted_files_with_exit_2(tmp_path: Path, name: str, mode: int,
                                                      owner: int | None, message: str) -> None:
    if owner is not None and os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    data_dir = tmp_path / "var"
    with scratch_shm_dir() as shm_dir:
        os.chmod(shm_dir, 0o1777)  # like /dev/shm: anyone may create a name first
        _plant(shm_dir / f"{_prefix(data_dir)}-{name}", 0 if name == "reports" else 4096,
               mode, owner)
        done = subprocess.run(pipeline_cmd("ledger", "--data-dir", str(data_dir)),
                              env=pipeline_env(shm_dir), capture_output=True, text=True,
                              timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    events = log_events(data_dir / "logs" / "ledger.log", "process.start_failed")
    assert events
    assert message in str(events[-1])


def test_a_planted_doorbell_stops_the_process_with_exit_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    (data_dir / "run").mkdir(parents=True)
    (data_dir / "run" / "ledger.bell").write_bytes(b"")
    with scratch_shm_dir() as shm_dir:
        done = subprocess.run(pipeline_cmd("ledger", "--data-dir", str(data_dir)),
                              env=pipeline_env(shm_dir), capture_output=True, text=True,
                              timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "is a regular file, not a FIFO" in done.stderr
    assert "Traceback" not in done.stderr
