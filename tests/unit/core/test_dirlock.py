"""The data-dir locks: one holder per name, refusals that name the holder, no adoption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import dirlock
from pipeline.errors import OperationalError


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    run_dir = tmp_path / "var" / "run"
    run_dir.mkdir(parents=True)
    first = dirlock.acquire(run_dir, "ledger")
    try:
        # flock belongs to the open file, so even this process cannot take it twice.
        with pytest.raises(dirlock.DataDirInUseError,
                           match=rf"data dir {tmp_path / 'var'} is in use by pid {os.getpid()} "
                                 r"\(ledger.lock is locked\)"):
            dirlock.acquire(run_dir, "ledger")
        dirlock.acquire(run_dir, "executor").close()  # another name is another lock
    finally:
        first.close()
    dirlock.acquire(run_dir, "ledger").close()  # released with its descriptor


def test_a_run_takes_all_its_locks_or_none(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    standalone = dirlock.acquire(run_dir, "executor")  # as under supervisord
    try:
        with pytest.raises(dirlock.DataDirInUseError, match=r"executor\.lock is locked"):
            dirlock.acquire_run(run_dir, ("ledger", "executor", "strategy"))
        dirlock.acquire(run_dir, "ledger").close()  # the failed run let go of what it took
        dirlock.acquire(run_dir, dirlock.RUN_LOCK).close()
    finally:
        standalone.close()
    locks = dirlock.acquire_run(run_dir, ("ledger", "executor"))
    assert locks.fds_for("ledger") == (locks.run.fd, locks.processes["ledger"].fd)
    assert locks.fds_for("localnet") == (locks.run.fd,)
    assert (run_dir / "pipeline.lock").stat().st_mode & 0o777 == 0o600
    locks.close()


def test_a_run_creates_its_run_dir_for_its_owner_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "var" / "run"
    dirlock.acquire_run(run_dir, ("ledger",)).close()
    assert run_dir.stat().st_mode & 0o777 == 0o700


def test_a_lock_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "ledger.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OperationalError, match="cannot open the lock file"):
        dirlock.acquire(tmp_path, "ledger")


def test_an_inherited_lock_is_used_only_if_it_is_that_file(tmp_path: Path) -> None:
    held = dirlock.acquire(tmp_path, "ledger")
    other = dirlock.acquire(tmp_path, "executor")
    try:
        env = {dirlock.LOCK_FD_ENV: str(held.fd)}
        adopted = dirlock.inherited(tmp_path / "ledger.lock", env)
        assert adopted is not None
        assert adopted.fd == held.fd
        assert dirlock.inherited(tmp_path / "executor.lock", env) is None  # another file
        assert dirlock.inherited(tmp_path / "ledger.lock", {dirlock.LOCK_FD_ENV: "x"}) is None
        assert dirlock.inherited(tmp_path / "ledger.lock", {}) is None
        # Without the inherited descriptor, the process takes its own and is refused.
        with pytest.raises(dirlock.DataDirInUseError):
            dirlock.for_process(tmp_path, "ledger", {})
        assert dirlock.for_process(tmp_path, "ledger", env).fd == held.fd
    finally:
        held.close()
        other.close()
