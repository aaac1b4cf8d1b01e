"""Wake-ups between processes that share two cores.

Each consuming process owns one doorbell: a named FIFO in the run directory, so processes
started independently (by supervisor) find each other by name. A reader that finds no data
spins for a short, configured time, then marks itself asleep in every ring it reads and
blocks on its doorbell (and on any ZeroMQ control sockets). A writer rings the doorbell only
when the reader's sleeping flag is set, so a busy pipeline pays nothing for wake-ups.

The sleeping flag and the write sequence form a store-then-load handshake on both sides,
which x86 may reorder; the block therefore has a short timeout (``max_block_s``) as a
backstop so a lost wake-up costs at most that long, never a hang.

A doorbell's name is predictable, so an existing FIFO is used only once the opened file is
verified (:mod:`pipeline.private_file`): a FIFO, owned by this user, mode 0600. Anything
else at that name stops the owning process at start; a ringer just never rings it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import zmq

from pipeline.private_file import ForeignFileError, open_existing, verify


class Waitable(Protocol):
    """What a Waiter needs from a ring reader."""

    def available(self) -> int: ...

    def set_sleeping(self, sleeping: bool) -> None: ...


def bell_path(bell_dir: Path, name: str) -> Path:
    return bell_dir / f"{name}.bell"


class Doorbell:
    """The receiving end: a FIFO this process reads, holding its own write end open.

    Keeping a write end open means the FIFO never reports end-of-file while no writer is
    attached, so the poll below blocks instead of spinning on POLLHUP.
    """

    def __init__(self, bell_dir: Path, name: str) -> None:
        bell_dir.mkdir(parents=True, exist_ok=True)
        self.path = bell_path(bell_dir, name)
        # An existing FIFO is ours from an earlier start, or planted: the checks decide.
        with contextlib.suppress(FileExistsError):
            os.mkfifo(self.path, 0o600)
        self._read_fd = open_existing(self.path, os.O_RDONLY | os.O_NONBLOCK, "doorbell",
                                      fifo=True)
        try:
            self._keep_fd = open_existing(self.path, os.O_WRONLY | os.O_NONBLOCK, "doorbell",
                                          fifo=True)
            if not os.path.sameopenfile(self._read_fd, self._keep_fd):
                os.close(self._keep_fd)
                raise ForeignFileError("type", f"doorbell {self.path} was replaced while "
                                               "it was being opened")
        except BaseException:
            os.close(self._read_fd)
            raise

    def fileno(self) -> int:
        return self._read_fd

    def drain(self) -> None:
        """Swallow pending rings; several rings while asleep mean one wake-up."""
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._keep_fd)


class BellRinger:
    """The sending end: rings other processes' doorbells by name, caching open FIFOs."""

    def __init__(self, bell_dir: Path) -> None:
        self._dir = bell_dir
        self._fds: dict[str, int] = {}
        self.rings = 0
        self.refused = 0  # doorbells that failed verification (not made by this user)

    def __call__(self, name: str) -> None:
        fd = self._fds.get(name)
        if fd is None:
            path = bell_path(self._dir, name)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENXIO, errno.ELOOP):
                    return  # that process is not up yet; it reads the ring when it starts
                raise
            try:
                verify(fd, path, "doorbell", fifo=True)
            except ForeignFileError:
                os.close(fd)  # its owner refuses it at start; never write into it
                self.refused += 1
                return
            self._fds[name] = fd
        try:
            os.write(fd, b"\x01")
            self.rings += 1
        except BlockingIOError:
            pass  # FIFO full: the reader has plenty of wake-ups queued already
        except BrokenPipeError:
            os.close(fd)  # the reader died; reopen when it is back
            del self._fds[name]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class Waiter:
    """Spin briefly, then sleep on the doorbell and any registered ZeroMQ sockets."""

    def __init__(self, doorbell: Doorbell, readers: Sequence[Waitable], *, spin_us: int,
                 max_block_s: float = 0.05) -> None:
        self._doorbell = doorbell
        self._readers = list(readers)
        self._spin_ns = spin_us * 1000
        self._max_block_ms = max(1, int(max_block_s * 1000))
        self._poller = zmq.Poller()
        self._poller.register(doorbell.fileno(), zmq.POLLIN)
        self.sleeps = 0

    def set_readers(self, readers: Sequence[Waitable]) -> None:
        """Replace the rings to watch (a reader re-attached to a new segment)."""
        self._readers = list(readers)

    def register(self, socket: Any) -> None:
        """Also wake when this socket (zmq socket or fd) is readable."""
        self._poller.register(socket, zmq.POLLIN)

    def _ready(self) -> bool:
        return any(r.available() > 0 for r in self._readers)

    def wait(self, timeout_s: float | None = None) -> list[Any]:
        """Return when a ring has data, a socket is readable or the timeout passed.

        Returns the readable sockets (empty when woken by data or timeout).
        """
        deadline = time.monotonic_ns() + self._spin_ns
        while time.monotonic_ns() < deadline:
            if self._ready():
                return []
        block_ms = self._max_block_ms if timeout_s is None else min(
            self._max_block_ms, max(0, int(timeout_s * 1000)))
        for reader in self._readers:
            reader.set_sleeping(True)
        try:
            if self._ready():
                return []
            events = self._poller.poll(block_ms)
            self.sleeps += 1
        finally:
            for reader in self._readers:
                reader.set_sleeping(False)
        self._doorbell.drain()
        return [sock for sock, _ in events if sock != self._doorbell.fileno()]
