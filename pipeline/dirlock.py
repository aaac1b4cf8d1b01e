"""One pipeline per data dir: exclusive locks in ``<data_dir>/run``.

``pipeline run`` takes ``pipeline.lock`` and one lock per process (``ledger.lock``, ...)
before it creates or unlinks anything, and hands each child ``pipeline.lock`` and that
child's own lock as inherited file descriptors: the locks then last until the last process
of the run has exited, even if the launcher itself is killed. A process started alone (by
supervisord) takes only its own lock. So a second ``pipeline run``, or a second process of
one name, finds a lock taken and stops before binding a socket or opening a ring.

These are ``flock`` locks: the kernel drops one with the last descriptor of its open file,
so a crashed or killed process never leaves a stale lock. The file holds the pid of the
holder, for the refusal message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import OperationalError

RUN_LOCK = "pipeline"
LOCK_FD_ENV = "PIPELINE_LOCK_FD"  # a child's own lock, inherited from ``pipeline run``


class DataDirInUseError(OperationalError):
    """Another pipeline (or another process of the same name) holds this data dir."""


@dataclass
class DirLock:
    """A held lock; released by :meth:`close` or when the process ends."""

    path: Path
    fd: int

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class RunLocks:
    """What ``pipeline run`` holds: the run's lock and each process's."""

    run: DirLock
    processes: dict[str, DirLock]

    def fds_for(self, name: str) -> tuple[int, ...]:
        """The descriptors a child inherits: the run's lock, and its own if it is a process."""
        own = self.processes.get(name)
        return (self.run.fd,) if own is None else (self.run.fd, own.fd)

    def close(self) -> None:
        for lock in (self.run, *self.processes.values()):
            lock.close()


def lock_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.lock"


def acquire(run_dir: Path, name: str) -> DirLock:
    """Take ``<run_dir>/<name>.lock`` now or raise :class:`DataDirInUseError` naming the holder."""
    path = lock_path(run_dir, name)
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DataDirInUseError(f"data dir {run_dir.parent} is in use by {holder} "
                           f"({path.name} is locked)") from None
    except OSError as exc:
        os.close(fd)
        raise OperationalError(f"{path}: cannot lock: {exc}") from exc
    _write_pid(fd)
    return DirLock(path, fd)


def acquire_run(run_dir: Path, processes: Iterable[str]) -> RunLocks:
    """Everything ``pipeline run`` must hold; all or nothing."""
    try:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise OperationalError(f"cannot create {run_dir}: {exc}") from exc
    run = acquire(run_dir, RUN_LOCK)
    held: dict[str, DirLock] = {}
    try:
        for name in processes:
            held[name] = acquire(run_dir, name)
    except OperationalError:
        RunLocks(run, held).close()
        raise
    return RunLocks(run, held)


def for_process(run_dir: Path, name: str,
                environ: Mapping[str, str] = os.environ) -> DirLock:
    """This process's own lock: the one ``pipeline run`` passed down, or a fresh one."""
    return inherited(lock_path(run_dir, name), environ) or acquire(run_dir, name)


def inherited(path: Path, environ: Mapping[str, str] = os.environ) -> DirLock | None:
    """The descriptor named by ``PIPELINE_LOCK_FD`` if it is open on ``path``, else None.

    Checking the file's identity (not trusting the number) keeps a stray variable, or a
    descriptor reused for something else, from passing for a held lock.
    """
    try:
        fd = int(environ.get(LOCK_FD_ENV, ""))
        held, named = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except (ValueError, OSError):
        return None
    if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
        return None
    os.set_inheritable(fd, False)
    _write_pid(fd)  # the refusal names this process rather than its launcher
    return DirLock(path, fd)


def _open(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OperationalError(f"{path}: cannot open the lock file: {exc}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise OperationalError(f"{path}: not a regular file owned by uid {os.geteuid()}; "
                               "remove it")
    return fd


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"pid {text}" if text.isdigit() else "another process"
