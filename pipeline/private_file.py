"""Files that processes share by name (rings, the kill flag, doorbells), never planted.

Rings and the kill flag live in ``/dev/shm`` under predictable names, doorbells in the run
directory: any local user who can write there could create one of these names first and
let the pipeline adopt it (a 0666 kill flag kept at "enabled", a 0-byte ring). So every
such file is created with ``O_CREAT | O_EXCL`` and mode 0600, and every open of an
existing one checks the descriptor it got (``fstat``, not the path, which can change under
us) before using it: opened without following a symbolic link, of the expected type, owned
by this process's effective user, no group or other permission bits, and the expected size.
Anything else is a :class:`ForeignFileError` naming the file and the fault.

Creation also reserves the file's memory (``posix_fallocate``): a full ``/dev/shm``
then fails here with ENOSPC (:class:`NoSpaceError`) instead of killing a process with
SIGBUS on its first write to a page the tmpfs cannot supply.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Final

from pipeline.errors import OperationalError

PRIVATE_MODE: Final = 0o600
_OPEN_FLAGS: Final = os.O_NOFOLLOW | os.O_CLOEXEC


class ForeignFileError(OperationalError):
    """A shared file exists but this pipeline did not make it (or it was tampered with).

    ``reason`` is a short code for metrics: missing, symlink, type, owner, mode, size,
    unreadable.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NoSpaceError(OperationalError):
    """The file system cannot hold the file (a full or too small ``/dev/shm``)."""


def _type_name(mode: int) -> str:
    return "FIFO" if stat.S_ISFIFO(mode) else "regular file" if stat.S_ISREG(mode) else \
        "directory" if stat.S_ISDIR(mode) else "special file"


def verify(fd: int, path: Path, kind: str, *, size: int | None = None,
           fifo: bool = False) -> os.stat_result:
    """Check an opened descriptor; raises ForeignFileError with what is wrong and what to do."""
    info = os.fstat(fd)
    wanted_type = stat.S_ISFIFO if fifo else stat.S_ISREG
    if not wanted_type(info.st_mode):
        raise ForeignFileError("type", f"{kind} {path} is a {_type_name(info.st_mode)}, not a "
                                       f"{'FIFO' if fifo else 'regular file'}; remove it")
    euid = os.geteuid()
    if info.st_uid != euid:
        raise ForeignFileError("owner", f"{kind} {path} is owned by uid {info.st_uid}, not by "
                                        f"this user (uid {euid}): the pipeline did not make it; "
                                        "refusing to use it (remove it as its owner or root)")
    if info.st_mode & 0o077:
        raise ForeignFileError("mode", f"{kind} {path} has mode "
                                       f"{stat.S_IMODE(info.st_mode):04o}, which lets other "
                                       f"users in (expected {PRIVATE_MODE:04o}); refusing to "
                                       "use it: remove it")
    if size is not None and info.st_size != size:
        raise ForeignFileError("size", f"{kind} {path} is {info.st_size} bytes, expected "
                                       f"{size}; refusing to use it: remove it")
    return info


def open_existing(path: Path, flags: int, kind: str, *, size: int | None = None,
                  fifo: bool = False) -> int:
    """Open a file another process of this pipeline made, and verify it; returns the fd.

    Raises FileNotFoundError if it does not exist (callers decide whether that is normal).
    """
    try:
        fd = os.open(path, flags | _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ForeignFileError("symlink", f"{kind} {path} is a symbolic link; refusing "
                                              "to follow it: remove it") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ForeignFileError("unreadable", f"{kind} {path} cannot be opened: "
                                                 f"{exc.strerror}; remove it") from None
        raise
    try:
        verify(fd, path, kind, size=size, fifo=fifo)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_exclusive(path: Path, flags: int, kind: str, *, size: int = 0) -> int:
    """Create a new private file of ``size`` bytes, all reserved; returns the fd.

    Raises FileExistsError if the name is taken (callers then open and verify it).
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # the umask may have removed bits we rely on
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    raise
                raise NoSpaceError(f"cannot reserve {size} bytes for {kind} {path}: "
                                   f"{exc.strerror} ({free_bytes(path.parent)} bytes free in "
                                   f"{path.parent}); make room there or lower the ring "
                                   "capacities") from None
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return fd


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged process may still allocate in ``directory``'s file system."""
    info = os.statvfs(directory)
    return info.f_bavail * info.f_frsize
