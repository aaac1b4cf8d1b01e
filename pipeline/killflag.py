"""The trading state in shared memory: written by the ledger, read before every send.

The ledger owns the answer to "may I send?" (:mod:`pipeline.trading_state`): the reasons
trading is halted, empty when it is on. ``TRADE_ENABLED`` (the config table, changed only
through governance) is one reason; a stalled commit, a chain mismatch, an unsafe clock and
"not published yet" are others. At start-up, on every change and on every heartbeat the
ledger writes the reasons here (a disable first here, then in the database); the strategy
reads them before sending intents and the executor immediately before handing orders to a
venue. A disable therefore stops sending within microseconds, however loaded the machine is.

The segment (``<ring prefix>-killswitch`` in the rings' shm directory) has a predictable
name, so it is never trusted for being there. Only the ledger creates it (``O_EXCL``, mode
0600, :mod:`pipeline.private_file`), and every open, by any process, checks the
descriptor's owner, mode and size: a file planted by another user is never adopted. A
restarted ledger reuses its own segment (also one of the previous layout, keeping its
pending disable), so readers keep reading the live word. The header names the ledger that
last wrote it (pid and run id) and when (monotonic ns, stamped at least every heartbeat),
and a disable that is not yet durable in the database is marked ``pending`` so a restarted
ledger finishes it.

The state word holds one exact value for "trading on" and the reasons otherwise, so a
zeroed or half-written page reads as halted, never as on. Readers are fail-closed: the
state counts only while the segment is present, verified, written by a running ledger (of
this run, when the launcher shares a run id) within ``stale_after_s``. Missing, foreign,
wrong mode or size, unlinked or replaced, stale or unreadable all read as
``Halt.UNAVAILABLE``, with a log line and a metric. The cheap part (one word) is read on
every call; the file checks run every ``recheck_s``.
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

from pipeline.config import PipelineConfig
from pipeline.errors import OperationalError
from pipeline.private_file import ForeignFileError, create_exclusive, open_existing
from pipeline.ring import pid_alive
from pipeline.trading_state import WRITTEN_MASK, Halt, names

_MAGIC: Final = 0x3354415453445254  # b"TRDSTAT3" little-endian
_MAGIC_V2: Final = 0x32474C464C4C494B  # b"KILLFLG2": the kill flag before it had reasons
SIZE: Final = mmap.PAGESIZE
# The one value of the state word that means "trading on": never all zero, no reason bits.
# Halted is a marker plus the reasons; neither can be mistaken for v2's "enabled" (2).
_OPEN: Final = 0x4E45504F00000000  # b"\0\0\0\0OPEN"
_HALTED: Final = 0x544C414800000000  # b"\0\0\0\0HALT"
_STARTING: Final = int(Halt.STARTING)
_TRADE_DISABLED: Final = int(Halt.TRADE_DISABLED)
_UNAVAILABLE: Final = int(Halt.UNAVAILABLE)
# Word indexes (8 bytes each) in the header; the first four are those of the v2 layout.
_W_MAGIC: Final = 0
_W_STATE: Final = 1  # _OPEN, or _HALTED | the Halt reasons
_W_PENDING: Final = 2  # 1: a disable is in force here but not yet in the database
_W_PID: Final = 3  # the ledger that last opened the segment
_RUN_OFFSET: Final = 32  # 16 bytes: that ledger's run id
_W_WRITTEN: Final = 6  # time.monotonic_ns of the ledger's last write (its heartbeat)
_KIND: Final = "trading state (kill flag)"


class KillFlagError(OperationalError):
    """The segment exists but is not one this pipeline made; the ledger cannot start."""


def flag_path(shm_dir: Path, ring_prefix: str) -> Path:
    return shm_dir / f"{ring_prefix}-killswitch"


def open_reader(config: PipelineConfig, process: str, run_id: uuid.UUID, *,
                log: logging.Logger, registry: CollectorRegistry) -> KillFlagReader:
    """The strategy's or the executor's reader of this pipeline's trading state.

    Under ``pipeline run`` every process shares the launcher's run id: a segment of another
    run is stale. Started alone (supervisor), the writer's liveness and heartbeat decide.
    Silent for ``run.heartbeat_timeout_s`` (the launcher's "hung") counts as stale.
    """
    shared_run = run_id if os.environ.get("PIPELINE_RUN_ID") else None
    return KillFlagReader(flag_path(Path(config.rings.shm_dir), config.paths.ring_prefix),
                          process=process, log=log, registry=registry,
                          expected_run=shared_run,
                          stale_after_s=config.run.heartbeat_timeout_s)


def holds_pending_disable(path: Path) -> bool:
    """True if the segment at ``path`` carries a disable not yet in the database (or cannot
    be read: then it is not ours to remove either). The launcher keeps such a segment at the
    end of a run so that the next ledger finishes the disable."""
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
    """The ledger's handle: creates or re-opens its own segment and publishes the state."""

    def __init__(self, path: Path, *, run_id: uuid.UUID, log: logging.Logger) -> None:
        self.path = path
        self._run_id = run_id
        self._log = log
        self._fd, self._mm, self._words = self._open()
        # A disable the previous ledger took but could not make durable before it stopped.
        self.found_pending_disable = bool(self._words[_W_PENDING])
        # As _open left it: STARTING, and TRADE_DISABLED if a disable is pending.
        self._halt = int(self._words[_W_STATE]) & WRITTEN_MASK
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
        if not created and words[_W_MAGIC] not in (_MAGIC, _MAGIC_V2):
            words.release()
            mm.close()
            os.close(fd)
            raise KillFlagError(f"{self.path} exists and is not a trading state segment; "
                                "remove it (no pipeline may be running on this data dir)")
        if words[_W_MAGIC] == _MAGIC_V2:  # left by the previous version: its pending word
            words[_W_MAGIC] = 0  # is at the same place; readers refuse it while rewritten
        # Until this ledger has read the database, only a pending disable stands.
        pending = not created and bool(words[_W_PENDING])
        words[_W_STATE] = _HALTED | _STARTING | (_TRADE_DISABLED if pending else 0)
        words[_W_PID] = os.getpid()
        mm[_RUN_OFFSET:_RUN_OFFSET + 16] = self._run_id.bytes
        words[_W_WRITTEN] = time.monotonic_ns()
        words[_W_MAGIC] = _MAGIC  # last: readers refuse a half-made header
        return fd, mm, words

    def publish(self, halt: int, *, pending: bool = False) -> None:
        """Publish the reasons trading is halted (0: trading on); ``pending`` marks a
        disable not yet committed to the database."""
        self._halt = halt & WRITTEN_MASK
        self._pending = pending and bool(self._halt & _TRADE_DISABLED)
        self.ensure_linked()  # a word in an unlinked file would reach no reader
        self._write()

    def beat(self) -> None:
        """The ledger's heartbeat: readers treat a state not written for a while as stale."""
        self.ensure_linked()
        self._write()

    def _write(self) -> None:
        if self._pending:
            self._words[_W_PENDING] = 1
        self._words[_W_STATE] = (_HALTED | self._halt) if self._halt else _OPEN
        if not self._pending:
            self._words[_W_PENDING] = 0
        self._words[_W_WRITTEN] = time.monotonic_ns()

    def ensure_linked(self) -> None:
        """Re-create the segment if someone unlinked or replaced it (readers, reading a file
        that no longer has a name, already treat trading as halted)."""
        if _same_file(self._fd, self.path):
            return
        self._log.error("the kill flag %s was removed or replaced; re-creating it", self.path,
                        extra={"event": "ledger.kill_flag_replaced"})
        try:
            fd, mm, words = self._open()
        except (OSError, OperationalError) as exc:  # e.g. a foreign file took the name
            self._log.error("cannot re-create the kill flag: %s (readers see trading "
                            "halted until this is fixed)", exc,
                            extra={"event": "ledger.kill_flag_failed"})
            return
        self._close_handles()
        self._fd, self._mm, self._words = fd, mm, words
        self._write()

    def _close_handles(self) -> None:
        self._words.release()
        self._mm.close()
        os.close(self._fd)

    def close(self) -> None:
        self._close_handles()


class KillFlagMetrics:
    """A reader's view of the segment: whether it can be trusted, and why not."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ok = Gauge("pipeline_kill_flag_ok",
                        "1 while the shared trading state is present, verified and live",
                        registry=registry)
        self.problems = Counter("pipeline_kill_flag_problems_total",
                                "Times the trading state was found unusable (trading off)",
                                ["reason"], registry=registry)


class KillFlagReader:
    """The strategy's and the executor's handle: fail-closed, re-verified every
    ``recheck_s``; ``process`` names the reader in its log events."""

    def __init__(self, path: Path, *, process: str, log: logging.Logger,
                 registry: CollectorRegistry, expected_run: uuid.UUID | None = None,
                 recheck_s: float = 0.02, stale_after_s: float = 2.0) -> None:
        self.path = path
        self._process = process
        self._log = log
        self._metrics = KillFlagMetrics(registry)
        self._expected_run = expected_run
        self._recheck_ns = int(recheck_s * 1e9)
        self._stale_after_ns = int(stale_after_s * 1e9)
        self._next_check_ns = 0
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._words: memoryview | None = None
        self.problem: str | None = "not opened yet"
        self._reason = ""
        self.check()

    def halt(self) -> int:
        """The reasons trading is halted, 0 when it is on: the send path's question."""
        if time.monotonic_ns() >= self._next_check_ns:
            self.check()
        words = self._words
        if words is None or self.problem is not None:
            return _UNAVAILABLE
        word = words[_W_STATE]
        if word == _OPEN:
            return 0
        return (word & WRITTEN_MASK) or _STARTING

    def written_age_s(self) -> float | None:
        """Seconds since the ledger last wrote the state (None: no segment open)."""
        if self._words is None:
            return None
        return (time.monotonic_ns() - int(self._words[_W_WRITTEN])) / 1e9

    def view(self) -> dict[str, object]:
        """The state as this reader sees it, for heartbeats and ``pipeline admin status``."""
        halt = self.halt()
        age_s = self.written_age_s()
        return {"enabled": not halt, "reasons": names(halt), "problem": self.problem,
                "written_age_s": None if age_s is None else round(age_s, 3)}

    def check(self) -> None:
        """Verify the file behind the word: present, ours, same inode, written lately by a
        live ledger. Opens (or re-opens) it when needed."""
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
                                                 f"{_KIND} of this version")
        self._fd, self._mm, self._words = fd, mm, words

    def _check_writer(self) -> None:
        assert self._words is not None
        assert self._mm is not None
        if self._words[_W_MAGIC] != _MAGIC:  # being re-made by a ledger of another version
            raise _StaleError(f"{_KIND} {self.path} is being re-initialised")
        pid = int(self._words[_W_PID])
        if not pid_alive(pid):
            raise _StaleError(f"{_KIND} {self.path} was last written by ledger pid {pid}, "
                              "which is not running")
        if self._expected_run is not None:
            run = uuid.UUID(bytes=bytes(self._mm[_RUN_OFFSET:_RUN_OFFSET + 16]))
            if run != self._expected_run:
                raise _StaleError(f"{_KIND} {self.path} belongs to run {run}, not to this "
                                  f"run {self._expected_run}")
        silent_ns = time.monotonic_ns() - int(self._words[_W_WRITTEN])
        if silent_ns > self._stale_after_ns:
            raise _StaleError(f"{_KIND} {self.path}: ledger pid {pid} has not written it for "
                              f"{silent_ns / 1e9:.1f} s (hung?)")

    def _trouble(self, reason: str, message: str) -> None:
        if reason != self._reason:  # once per kind of trouble, not per changing detail
            self._metrics.problems.labels(reason).inc()
            self._log.error("trading halted: %s", message,
                            extra={"event": f"{self._process}.kill_flag_unusable",
                                   "reason": reason})
        self.problem = message
        self._reason = reason
        self._metrics.ok.set(0)

    def _healthy(self) -> None:
        if self.problem is not None and self._reason:
            self._log.warning("trading state %s is usable again", self.path,
                              extra={"event": f"{self._process}.kill_flag_ok"})
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
    """The segment is ours but nobody alive (of this run) stands behind its value lately."""
