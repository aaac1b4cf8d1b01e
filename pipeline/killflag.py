"""The kill switch's fast path: one word in shared memory, read before every send.

The ledger owns ``TRADE_ENABLED`` (the config table, changed only through governance).
At start-up and right after every commit that changes it, the ledger stores the value here;
the executor reads it immediately before handing orders to a venue. A disable therefore
stops sending within microseconds of its commit, however loaded the machine is; the ZeroMQ
``config.TRADE_ENABLED`` event stays for logs, watchers and the executor's status.

The segment (``<ring prefix>-killswitch`` in the rings' shm directory, mode 0600) is never
unlinked by the ledger: a restarted ledger reuses it, so the executor never reads a
detached copy. ``pipeline run`` removes it after an orderly stop.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Final

_MAGIC: Final = 0x47414C464C4C494B  # b"KILLFLAG"
_SIZE: Final = mmap.PAGESIZE
_UNKNOWN: Final = 0  # nobody wrote a value yet: trading stays off
_DISABLED: Final = 1
_ENABLED: Final = 2


def flag_path(shm_dir: Path, ring_prefix: str) -> Path:
    return shm_dir / f"{ring_prefix}-killswitch"


class KillFlag:
    """A process's handle on the shared kill-switch word."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._mm = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        self._words = memoryview(self._mm).cast("Q")
        if self._words[0] not in (0, _MAGIC):
            self.close()
            raise ValueError(f"{path} exists and is not a kill-switch segment")
        self._words[0] = _MAGIC
        self.path = path

    def set(self, enabled: bool) -> None:
        """The ledger's side: publish the committed value."""
        self._words[1] = _ENABLED if enabled else _DISABLED

    def enabled(self) -> bool | None:
        """The executor's side: True, False, or None while no ledger has spoken."""
        state = self._words[1]
        return None if state == _UNKNOWN else state == _ENABLED

    def close(self) -> None:
        self._words.release()
        self._mm.close()
