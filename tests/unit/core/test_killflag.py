"""The shared trading state (kill flag): made only by the ledger, verified on every open,
fail-closed, carrying the reasons trading is halted."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from testkit import eventually

from pipeline.errors import OperationalError
from pipeline.killflag import (
    SIZE,
    KillFlagReader,
    KillFlagWriter,
    flag_path,
    holds_pending_disable,
)
from pipeline.records import RejectReason
from pipeline.trading_state import Halt, describe, names, primary, reject_reason

LOG = logging.getLogger("test.killflag")
RUN = uuid.uuid4()


def _writer(path: Path, run_id: uuid.UUID = RUN) -> KillFlagWriter:
    return KillFlagWriter(path, run_id=run_id, log=LOG)


def _reader(path: Path, registry: CollectorRegistry | None = None,
            expected_run: uuid.UUID | None = None, stale_after_s: float = 60.0
            ) -> KillFlagReader:
    return KillFlagReader(path, process="test", log=LOG, registry=registry or CollectorRegistry(),
                          expected_run=expected_run, recheck_s=0.0, stale_after_s=stale_after_s)


def _problems(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("pipeline_kill_flag_problems_total",
                                     {"reason": reason}) or 0.0


def test_the_ledger_creates_it_private_and_the_executor_reads_each_change(
        shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    assert path.stat().st_mode & 0o777 == 0o600
    executor = _reader(path)
    assert executor.halt() == Halt.STARTING  # created, nothing published yet: off
    ledger.publish(0)
    assert executor.halt() == 0
    ledger.publish(Halt.TRADE_DISABLED)
    assert executor.halt() == Halt.TRADE_DISABLED
    ledger.close()
    restarted = _writer(path)  # a restarted ledger re-opens its own flag
    assert executor.halt() == Halt.STARTING  # nothing holds until it read its database
    restarted.publish(0)
    assert executor.halt() == 0
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
    assert executor.halt() == Halt.UNAVAILABLE
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
    assert executor.halt() == Halt.UNAVAILABLE
    assert _problems(registry, "owner") == 1
    executor.close()


def test_a_symlink_is_not_followed(shm_dir: Path) -> None:
    target = shm_dir / "elsewhere"
    _writer(target).publish(0)
    path = flag_path(shm_dir, "pl-paper-test")
    path.symlink_to(target)
    with pytest.raises(OperationalError, match="symbolic link"):
        _writer(path)
    assert _reader(path).halt() == Halt.UNAVAILABLE


def test_missing_means_disabled_until_the_ledger_creates_it(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    registry = CollectorRegistry()
    executor = _reader(path, registry)
    assert executor.halt() == Halt.UNAVAILABLE
    assert executor.problem is not None
    assert "does not exist" in executor.problem
    ledger = _writer(path)
    ledger.publish(0)
    assert executor.halt() == 0
    assert executor.problem is None
    assert registry.get_sample_value("pipeline_kill_flag_ok") == 1
    ledger.close()
    executor.close()


def test_an_unlinked_flag_reads_disabled_and_the_ledger_re_creates_it(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.publish(0)
    executor = _reader(path)
    assert executor.halt() == 0
    path.unlink()  # e.g. a second launcher cleaning up on its way out
    assert executor.halt() == Halt.UNAVAILABLE  # its word still says enabled: not trusted
    ledger.publish(Halt.TRADE_DISABLED)  # `pipeline admin kill` now...
    ledger.ensure_linked()  # ...and the ledger's next heartbeat
    assert path.exists()
    assert executor.halt() == Halt.TRADE_DISABLED
    ledger.publish(0)
    assert executor.halt() == 0  # re-attached to the new file
    ledger.close()
    executor.close()


def test_a_replaced_flag_is_re_verified(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.publish(0)
    executor = _reader(path)
    assert executor.halt() == 0
    path.unlink()
    path.write_bytes(b"\x00" * SIZE)  # same name, not made by the ledger...
    path.chmod(0o644)  # ...mode 0644 (whatever this process's umask)
    assert executor.halt() == Halt.UNAVAILABLE
    assert executor.problem is not None
    assert "mode" in executor.problem
    ledger.close()
    executor.close()


def test_a_chmod_after_opening_is_noticed(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.publish(0)
    executor = _reader(path)
    assert executor.halt() == 0
    os.chmod(path, 0o666)
    assert executor.halt() == Halt.UNAVAILABLE
    ledger.close()
    executor.close()


def test_a_flag_left_by_a_dead_ledger_is_stale(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    code = ("import logging, sys, uuid; from pathlib import Path; "
            "from pipeline.killflag import KillFlagWriter; "
            "KillFlagWriter(Path(sys.argv[1]), run_id=uuid.uuid4(), "
            "log=logging.getLogger()).publish(0)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    registry = CollectorRegistry()
    executor = _reader(path, registry)
    assert executor.halt() == Halt.UNAVAILABLE  # says enabled, but its ledger is gone
    assert executor.problem is not None
    assert "not running" in executor.problem
    assert _problems(registry, "stale") == 1
    executor.close()


def test_a_flag_of_another_run_is_stale(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path, run_id=uuid.uuid4())
    ledger.publish(0)
    assert _reader(path, expected_run=RUN).halt() == Halt.UNAVAILABLE
    assert _reader(path).halt() == 0  # started alone: no shared run id to compare
    ledger.close()


def test_a_pending_disable_survives_a_ledger_restart(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.publish(Halt.TRADE_DISABLED, pending=True)
    ledger.close()
    restarted = _writer(path)
    assert restarted.found_pending_disable
    executor = _reader(path)
    assert executor.halt() == Halt.STARTING | Halt.TRADE_DISABLED
    restarted.publish(Halt.TRADE_DISABLED)  # written to the database: no longer pending
    restarted.close()
    assert not _writer(path).found_pending_disable


def test_the_launcher_keeps_a_flag_that_holds_a_pending_disable(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-pending")
    assert not holds_pending_disable(path), "no flag: nothing to keep"
    ledger = _writer(path)
    ledger.publish(0)
    assert not holds_pending_disable(path)
    ledger.publish(Halt.TRADE_DISABLED, pending=True)  # the database could not write the disable
    ledger.close()
    assert holds_pending_disable(path)
    os.chmod(path, 0o666)  # not ours to judge, so not ours to remove either
    assert holds_pending_disable(path)


def test_several_reasons_are_published_and_mapped(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    executor = _reader(path)
    ledger.publish(Halt.LEDGER_STALLED)
    assert executor.halt() == Halt.LEDGER_STALLED
    assert reject_reason(executor.halt()) is RejectReason.LEDGER_STALLED  # resumes by itself
    ledger.publish(Halt.TRADE_DISABLED | Halt.CHAIN_MISMATCH | Halt.LEDGER_STALLED)
    halt = executor.halt()
    assert names(halt) == ["chain_mismatch", "trade_disabled", "ledger_stalled"]
    assert primary(halt) == "chain_mismatch"
    assert reject_reason(halt) is RejectReason.TRADING_DISABLED  # needs an operator
    assert describe(halt) == "HALTED (chain_mismatch, trade_disabled, ledger_stalled)"
    ledger.publish(Halt.CLOCK_UNSAFE)
    view = executor.view()  # one reading: its age changes between two
    assert view == {"enabled": False, "reasons": ["clock_unsafe"], "problem": None,
                    "written_age_s": view["written_age_s"]}
    ledger.publish(0)
    assert describe(executor.halt()) == "enabled"
    ledger.close()
    executor.close()


def test_a_zeroed_or_garbled_state_word_reads_halted(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)
    ledger.publish(0)
    executor = _reader(path)
    assert executor.halt() == 0
    fd = os.open(path, os.O_RDWR)
    try:
        for word in (0, 2, 0xFFFFFFFFFFFFFFFF):  # 2 was "enabled" in the v2 layout
            os.pwrite(fd, word.to_bytes(8, "little"), 8)
            assert executor.halt() != 0, word
        assert executor.halt() == Halt.STARTING | Halt.CHAIN_MISMATCH | Halt.TRADE_DISABLED \
            | Halt.CLOCK_UNSAFE | Halt.LEDGER_STALLED  # every written bit of the garbage
    finally:
        os.close(fd)
    ledger.close()
    executor.close()


def test_a_state_the_ledger_stopped_writing_goes_stale(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    ledger = _writer(path)  # alive (this process), but silent: hung
    ledger.publish(0)
    registry = CollectorRegistry()
    executor = _reader(path, registry, stale_after_s=0.05)
    assert executor.halt() == 0
    eventually(lambda: executor.halt() == Halt.UNAVAILABLE, timeout_s=5)
    assert executor.problem is not None
    assert "has not written it" in executor.problem
    assert _problems(registry, "stale") == 1
    ledger.beat()  # its next heartbeat
    assert executor.halt() == 0
    ledger.close()
    executor.close()


def test_a_segment_of_the_previous_layout_is_taken_over_with_its_pending_disable(
        shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, SIZE)  # v2 header: magic, state 1 (disabled), pending 1, pid
        os.pwrite(fd, b"KILLFLG2" + (1).to_bytes(8, "little") * 2
                  + os.getpid().to_bytes(8, "little"), 0)
    finally:
        os.close(fd)
    executor = _reader(path)
    assert executor.halt() == Halt.UNAVAILABLE  # not a layout this reader knows
    ledger = _writer(path)
    assert ledger.found_pending_disable
    assert executor.halt() == Halt.STARTING | Halt.TRADE_DISABLED
    assert holds_pending_disable(path)
    ledger.publish(Halt.TRADE_DISABLED)  # the recovered disable is now in the database
    assert not holds_pending_disable(path)
    ledger.close()
    executor.close()
