"""The kill switch's fast path: one word in shared memory, read before every send.

The ledger owns ``TRADE_ENABLED`` (the config table, changed only through governance).
At start-up and on every change the ledger stores the value here (a disable first here,
then in the database); the executor reads it immediately before handing orders to a venue.
A disable therefore stops sending within microseconds, however loaded the machine is.

The segment (``<ring prefix>-killswitch`` in the rings' shm directory) has a predictable
name, so it is never trusted for being there. Only the ledger creates it (``O_EXCL``, mode
0600, :mod:`pipeline.private_file`), and every open, by the ledger or the executor, checks
the descriptor's owner, mode and size: a file planted by another user is never adopted.
A restarted ledger reuses its own segment, so the executor keeps reading the live word.
The header names the ledger that last wrote it (pid and run id), and a disable that is not
yet durable in the database is marked ``pending`` so a restarted ledger finishes it.

The executor's side is fail-closed: trading is enabled only while the flag is present,
verified, written by a running ledger (of this run, when the launcher shares a run id) and
says "enabled". Missing, foreign, wrong mode or size, unlinked or replaced, stale or
unreadable all read as disabled, with a log line and a metric. The cheap part (one word)
is read on every send; the file checks run every ``recheck_s``.
"""

from __future__ import annotations

import logging
import mmap
import os
import time
import uuid
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.errors import OperationalError
from pipeline.private_file import ForeignFileError, create_exclusive, open_existing

_MAGIC: Final = 0x32474C464C4C494B  # b"KILLFLG2" little-endian
SIZE: Final = mmap.PAGESIZE
_UNKNOWN: Final = 0  # nobody wrote a value yet: trading stays off
_DISABLED: Final = 1
_ENABLED: Final = 2
# Word indexes (8 bytes each) in the header.
_W_MAGIC: Final = 0
_W_STATE: Final = 1
_W_PENDING: Final = 2  # 1: a disable is in force here but not yet in the database
_W_PID: Final = 3  # the ledger that last opened the flag
_RUN_OFFSET: Final = 32  # 16 bytes: that ledger's run id
_KIND: Final = "kill flag"


class KillFlagError(OperationalError):
    """The kill flag exists but is not one this pipeline made; the ledger cannot start."""


def flag_path(shm_dir: Path, ring_prefix: str) -> Path:
    return shm_dir / f"{ring_prefix}-killswitch"


def holds_pending_disable(path: Path) -> bool:
    """True if the flag at ``path`` carries a disable not yet in the database (or cannot be
    read: then it is not ours to remove either). The launcher keeps such a flag at the end
    of a run so that the next ledger finishes the disable."""
    try:
        fd = open_existing(path, os.O_RDONLY, _KIND, size=SIZE)
    except FileNotFoundError:
        return False
    except OperationalError:
        return True
    try:
        header = os.pread(fd, 8 * (_W_PENDING + 1), 0)
    finally:
        os.close(fd)
    words = memoryview(header).cast("Q")
    return words[_W_MAGIC] != _MAGIC or bool(words[_W_PENDING])


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open on ``fd`` (not unlinked nor replaced)."""
    mine = os.fstat(fd)
    if mine.st_nlink == 0:
        return False
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


class KillFlagWriter:
    """The ledger's handle: creates or re-opens its own flag and publishes the value."""

    def __init__(self, path: Path, *, run_id: uuid.UUID, log: logging.Logger) -> None:
        self.path = path
        self._run_id = run_id
        self._log = log
        self._fd, self._mm, self._words = self._open()
        # A disable the previous ledger took but could not make durable before it stopped.
        self.found_pending_disable = bool(self._words[_W_PENDING])
        self._state = _DISABLED if self.found_pending_disable else _UNKNOWN
        self._pending = self.found_pending_disable

    def _open(self) -> tuple[int, mmap.mmap, memoryview]:
        try:
            fd = create_exclusive(self.path, os.O_RDWR, _KIND, size=SIZE)
            created = True
        except FileExistsError:
            fd = open_existing(self.path, os.O_RDWR, _KIND, size=SIZE)
            created = False
        try:
            mm = mmap.mmap(fd, SIZE)
        except BaseException:
            os.close(fd)
            raise
        words = memoryview(mm).cast("Q")
        if not created and words[_W_MAGIC] != _MAGIC:
            words.release()
            mm.close()
            os.close(fd)
            raise KillFlagError(f"{self.path} exists and is not a kill flag of this version; "
                                "remove it (no pipeline may be running on this data dir)")
        if not created:  # until this ledger has read the database, only a pending disable
            words[_W_STATE] = _DISABLED if words[_W_PENDING] else _UNKNOWN  # stands
        words[_W_PID] = os.getpid()
        mm[_RUN_OFFSET:_RUN_OFFSET + 16] = self._run_id.bytes
        words[_W_MAGIC] = _MAGIC  # last on creation: readers refuse a half-made header
        return fd, mm, words

    def set(self, enabled: bool, *, pending: bool = False) -> None:
        """Publish a value; ``pending`` marks a disable not yet committed to the database."""
        self._state = _ENABLED if enabled else _DISABLED
        self._pending = pending and not enabled
        self.ensure_linked()  # a word in an unlinked file would reach no executor
        self._publish()

    def _publish(self) -> None:
        if self._pending:
            self._words[_W_PENDING] = 1
        self._words[_W_STATE] = self._state
        if not self._pending:
            self._words[_W_PENDING] = 0

    def ensure_linked(self) -> None:
        """Re-create the flag if someone unlinked or replaced it (the executor, reading a
        file that no longer has a name, already treats trading as disabled)."""
        if _same_file(self._fd, self.path):
            return
        self._log.error("the kill flag %s was removed or replaced; re-creating it", self.path,
                        extra={"event": "ledger.kill_flag_replaced"})
        try:
            fd, mm, words = self._open()
        except (OSError, OperationalError) as exc:  # e.g. a foreign file took the name
            self._log.error("cannot re-create the kill flag: %s (the executor sees trading "
                            "disabled until this is fixed)", exc,
                            extra={"event": "ledger.kill_flag_failed"})
            return
        self._close_handles()
        self._fd, self._mm, self._words = fd, mm, words
        self._publish()

    def _close_handles(self) -> None:
        self._words.release()
        self._mm.close()
        os.close(self._fd)

    def close(self) -> None:
        self._close_handles()


class KillFlagMetrics:
    """The executor's view of the flag: whether it can be trusted, and why not."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ok = Gauge("pipeline_kill_flag_ok",
                        "1 while the shared kill flag is present, verified and live",
                        registry=registry)
        self.problems = Counter("pipeline_kill_flag_problems_total",
                                "Times the kill flag was found unusable (trading off)",
                                ["reason"], registry=registry)


class KillFlagReader:
    """The executor's handle: fail-closed, re-verified every ``recheck_s``."""

    def __init__(self, path: Path, *, log: logging.Logger, registry: CollectorRegistry,
                 expected_run: uuid.UUID | None = None, recheck_s: float = 0.02) -> None:
        self.path = path
        self._log = log
        self._metrics = KillFlagMetrics(registry)
        self._expected_run = expected_run
        self._recheck_ns = int(recheck_s * 1e9)
        self._next_check_ns = 0
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._words: memoryview | None = None
        self.problem: str | None = "not opened yet"
        self._reason = ""
        self.check()

    def enabled(self) -> bool:
        """True only if the flag is verified and says enabled; the send path's question."""
        if time.monotonic_ns() >= self._next_check_ns:
            self.check()
        words = self._words
        return words is not None and self.problem is None and words[_W_STATE] == _ENABLED

    def check(self) -> None:
        """Verify the file behind the word: present, ours, same inode, written by a live
        ledger. Opens (or re-opens) it when needed."""
        self._next_check_ns = time.monotonic_ns() + self._recheck_ns
        try:
            if self._words is None or not _same_file(self._fd, self.path):
                self._detach()
                self._attach()
            info = os.fstat(self._fd)  # a chmod or chown after we opened it
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                raise ForeignFileError("owner", f"{_KIND} {self.path} changed owner or mode "
                                                "after it was opened")
            self._check_writer()
        except FileNotFoundError:
            self._detach()
            self._trouble("missing", f"{_KIND} {self.path} does not exist (no ledger has "
                                     "created it, or it was removed)")
        except ForeignFileError as exc:
            self._detach()
            self._trouble(exc.reason, str(exc))
        except _StaleError as exc:
            self._trouble("stale", str(exc))
        except OSError as exc:
            self._detach()
            self._trouble("unreadable", f"{_KIND} {self.path}: {exc}")
        else:
            self._healthy()

    def _attach(self) -> None:
        fd = open_existing(self.path, os.O_RDONLY, _KIND, size=SIZE)
        try:
            mm = mmap.mmap(fd, SIZE, prot=mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            raise
        words = memoryview(mm).cast("Q")
        if words[_W_MAGIC] != _MAGIC:
            words.release()
            mm.close()
            os.close(fd)
            raise ForeignFileError("not_a_flag", f"{self.path} is not an initialised "
                                                 f"{_KIND}")
        self._fd, self._mm, self._words = fd, mm, words

    def _check_writer(self) -> None:
        assert self._words is not None
        assert self._mm is not None
        pid = int(self._words[_W_PID])
        if not _alive(pid):
            raise _StaleError(f"{_KIND} {self.path} was last written by ledger pid {pid}, which is "
                         "not running")
        if self._expected_run is not None:
            run = uuid.UUID(bytes=bytes(self._mm[_RUN_OFFSET:_RUN_OFFSET + 16]))
            if run != self._expected_run:
                raise _StaleError(f"{_KIND} {self.path} belongs to run {run}, not to this run "
                             f"{self._expected_run}")

    def _trouble(self, reason: str, message: str) -> None:
        if message != self.problem:
            self._metrics.problems.labels(reason).inc()
            self._log.error("trading disabled: %s", message,
                            extra={"event": "executor.kill_flag_unusable", "reason": reason})
        self.problem = message
        self._reason = reason
        self._metrics.ok.set(0)

    def _healthy(self) -> None:
        if self.problem is not None and self._reason:
            self._log.warning("kill flag %s is usable again", self.path,
                              extra={"event": "executor.kill_flag_ok"})
        self.problem = None
        self._reason = ""
        self._metrics.ok.set(1)

    def _detach(self) -> None:
        if self._words is not None:
            self._words.release()
            self._words = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        self._detach()


class _StaleError(Exception):
    """The flag is ours but nobody alive (of this run) stands behind its value."""
