"""Log lines are JSON with ISO 8601 UTC timestamps, and a process that cannot start says why
in its own JSON log (where the operator and the log shipper look), not only on stderr."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.errors import EXIT_OPERATIONAL
from pipeline.logs import log_start_failure, setup_logging

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def _own_root_logger() -> Iterator[None]:
    """These tests point the root logger at their files: hand it back without them."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def _lines(log_file: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log_file.read_text().splitlines()]


def test_timestamps_are_utc_with_milliseconds_whatever_the_host_zone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # nine hours from UTC: a local time would show
    time.tzset()
    try:
        log = setup_logging("ingest", "paper", tmp_path, to_stderr=False)
        before = datetime.now(UTC)
        log.info("hello", extra={"event": "test.hello"})
        after = datetime.now(UTC)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    line, = _lines(tmp_path / "ingest.log")
    stamp = str(line["time"])
    assert ISO_UTC.match(stamp), stamp
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= when <= after
    assert line["event"] == "test.hello"


def test_a_start_failure_is_written_as_one_json_line(tmp_path: Path) -> None:
    log_start_failure("executor", "devnet", tmp_path / "logs", "config x = 1: bad")
    line, = _lines(tmp_path / "logs" / "executor.log")
    assert line["event"] == "process.start_failed"
    assert line["level"] == "ERROR"
    assert line["message"] == "cannot start: config x = 1: bad"
    assert line["process"] == "executor"
    assert line["env"] == "devnet"
    assert ISO_UTC.match(str(line["time"]))


def _pipeline(*args: str, shm_dir: Path) -> subprocess.CompletedProcess[str]:
    """One process as supervisord runs it: logging to its file only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE")}
    env.update(PIPELINE__LOG__STDERR="false", PIPELINE__RINGS__SHM_DIR=f'"{shm_dir}"',
               PIPELINE__METRICS__PORTS="{ ingest = 0, strategy = 0, executor = 0, ledger = 0 }")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_config_that_does_not_load_is_in_the_process_log(tmp_path: Path,
                                                           shm_dir: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text("[ledger]\ncommits_per_s = -5\n")
    data_dir = tmp_path / "var"
    done = _pipeline("ledger", "--config", str(config), "--data-dir", str(data_dir),
                     shm_dir=shm_dir)
    assert done.returncode == EXIT_OPERATIONAL
    assert "commits_per_s = -5" in done.stderr  # supervisor's <process>.stderr.log
    line, = _lines(data_dir / "logs" / "ledger.log")
    assert line["event"] == "process.start_failed"
    assert "commits_per_s = -5" in str(line["message"])
    assert ISO_UTC.match(str(line["time"]))


def test_a_refused_start_is_in_the_process_log(tmp_path: Path, shm_dir: Path) -> None:
    data_dir = tmp_path / "var"
    config = tmp_path / "pipeline.toml"
    config.write_text(f'[ingest]\nreplay_path = "{tmp_path / "missing.npz"}"\n')
    done = _pipeline("ingest", "--config", str(config), "--data-dir", str(data_dir),
                     shm_dir=shm_dir)
    assert done.returncode == EXIT_OPERATIONAL, done.stderr
    failed = [line for line in _lines(data_dir / "logs" / "ingest.log")
              if line.get("event") == "process.start_failed"]
    assert len(failed) == 1, failed
    assert "check replay failed" in str(failed[0]["message"])
    assert "missing.npz" in done.stderr  # and on stderr, for supervisor's log and a terminal
