"""The shared kill flag: made only by the ledger, verified on every open, fail-closed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.errors import OperationalError
from pipeline.killflag import (
    SIZE,
    KillFlagReader,
    KillFlagWriter,
    flag_path,
    holds_pending_disable,
)

LOG = logging.getLogger("test.killflag")
RUN = uuid.uuid4()


def _writer(path: Path, run_id: uuid.UUID = RUN) -> KillFlagWriter:
    return KillFlagWriter(path, run_id=run_id, log=LOG)


def _reader(path: Path, registry: CollectorRegistry | None = None,
            expected_run: uuid.UUID | None = None) -> KillFlagReader:
    return KillFlagReader(path, log=LOG, registry=registry or CollectorRegistry(),
                          expected_run=expected_run, recheck_s=0.0)


def _problems(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("pipeline_kill_flag_problems_total",
                                     {"reason": reason}) or 0.0


def test_the_ledger_creates_it_private_and_the_executor_reads_each_change(
        shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    assert path.stat().st_mode & 0o777 == 0o600
    executor = _reader(path)
    assert executor.enabled() is False  # created, nothing published yet: off
    ledger.set(True)
    assert executor.enabled() is True
    ledger.set(False)
    assert executor.enabled() is False
    ledger.close()
    restarted = _writer(path)  # a restarted ledger re-opens its own flag
    assert executor.enabled() is False  # nothing holds until it read its database
    restarted.set(True)
    assert executor.enabled() is True
    restarted.close()
    executor.close()


@pytest.mark.parametrize(("mode", "size", "reason"), [
    (0o666, SIZE, "mode"),  # the attack: a world-writable flag kept at "enabled"
    (0o640, SIZE, "mode"),
    (0o600, 0, "size"),
    (0o600, SIZE * 2, "size"),
])
def test_a_planted_flag_is_refused_by_both_sides(shm_dir: Path, mode: int, size: int,
                                                 reason: str) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    path.write_bytes(b"\x01" * size)
    os.chmod(path, mode)
    with pytest.raises(OperationalError, match="refusing to use it"):
        _writer(path)
    registry = CollectorRegistry()
    executor = _reader(path, registry)
    assert executor.enabled() is False
    assert executor.problem is not None
    assert str(path) in executor.problem
    assert _problems(registry, reason) == 1
    assert registry.get_sample_value("pipeline_kill_flag_ok") == 0
    executor.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_flag_owned_by_another_user_is_never_adopted(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    os.chmod(shm_dir, 0o1777)  # like /dev/shm itself: anyone may create a name first
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.truncate(path, SIZE)
    os.chown(path, 65534, 65534)
    with pytest.raises(OperationalError, match="owned by uid 65534"):
        _writer(path)
    registry = CollectorRegistry()
    executor = _reader(path, registry)
    assert executor.enabled() is False
    assert _problems(registry, "owner") == 1
    executor.close()


def test_a_symlink_is_not_followed(shm_dir: Path) -> None:
    target = shm_dir / "elsewhere"
    _writer(target).set(True)
    path = flag_path(shm_dir, "pl-paper-test")
    path.symlink_to(target)
    with pytest.raises(OperationalError, match="symbolic link"):
        _writer(path)
    assert _reader(path).enabled() is False


def test_missing_means_disabled_until_the_ledger_creates_it(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    registry = CollectorRegistry()
    executor = _reader(path, registry)
    assert executor.enabled() is False
    assert executor.problem is not None
    assert "does not exist" in executor.problem
    ledger = _writer(path)
    ledger.set(True)
    assert executor.enabled() is True
    assert executor.problem is None
    assert registry.get_sample_value("pipeline_kill_flag_ok") == 1
    ledger.close()
    executor.close()


def test_an_unlinked_flag_reads_disabled_and_the_ledger_re_creates_it(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.set(True)
    executor = _reader(path)
    assert executor.enabled() is True
    path.unlink()  # e.g. a second launcher cleaning up on its way out
    assert executor.enabled() is False  # its word still says enabled: not trusted
    ledger.set(False)  # `pipeline admin kill` now...
    ledger.ensure_linked()  # ...and the ledger's next heartbeat
    assert path.exists()
    assert executor.enabled() is False
    ledger.set(True)
    assert executor.enabled() is True  # re-attached to the new file
    ledger.close()
    executor.close()


def test_a_replaced_flag_is_re_verified(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.set(True)
    executor = _reader(path)
    assert executor.enabled() is True
    path.unlink()
    path.write_bytes(b"\x00" * SIZE)  # same name, not made by the ledger
    os.chmod(path, 0o644)
    assert executor.enabled() is False
    assert executor.problem is not None
    assert "mode" in executor.problem
    ledger.close()
    executor.close()


def test_a_chmod_after_opening_is_noticed(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.set(True)
    executor = _reader(path)
    assert executor.enabled() is True
    os.chmod(path, 0o666)
    assert executor.enabled() is False
    ledger.close()
    executor.close()


def test_a_flag_left_by_a_dead_ledger_is_stale(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    code = ("import logging, sys, uuid; from pathlib import Path; "
            "from pipeline.killflag import KillFlagWriter; "
            "KillFlagWriter(Path(sys.argv[1]), run_id=uuid.uuid4(), "
            "log=logging.getLogger()).set(True)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    registry = CollectorRegistry()
    executor = _reader(path, registry)
    assert executor.enabled() is False  # says enabled, but its ledger is gone
    assert executor.problem is not None
    assert "not running" in executor.problem
    assert _problems(registry, "stale") == 1
    executor.close()


def test_a_flag_of_another_run_is_stale(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path, run_id=uuid.uuid4())
    ledger.set(True)
    assert _reader(path, expected_run=RUN).enabled() is False
    assert _reader(path).enabled() is True  # started alone: no shared run id to compare
    ledger.close()


def test_a_pending_disable_survives_a_ledger_restart(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.set(False, pending=True)
    ledger.close()
    restarted = _writer(path)
    assert restarted.found_pending_disable
    executor = _reader(path)
    assert executor.enabled() is False
    restarted.set(False)  # written to the database: no longer pending
    restarted.close()
    assert not _writer(path).found_pending_disable


def test_the_launcher_keeps_a_flag_that_holds_a_pending_disable(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-pending")
    assert not holds_pending_disable(path), "no flag: nothing to keep"
    ledger = _writer(path)
    ledger.set(True)
    assert not holds_pending_disable(path)
    ledger.set(False, pending=True)  # the database could not write the disable
    ledger.close()
    assert holds_pending_disable(path)
    os.chmod(path, 0o666)  # not ours to judge, so not ours to remove either
    assert holds_pending_disable(path)
