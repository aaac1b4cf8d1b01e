"""Ask the Linux scheduler (EEVDF, 6.12+) for a short time slice for this process.

On two vCPUs shared by four processes, a waking strategy or executor often finds both CPUs
busy and waits until the running task's slice ends (1.4 ms by default here): that is the
tick-to-order tail. A task that asks for a shorter slice gets an earlier virtual deadline
and, with the kernel's PREEMPT_SHORT, preempts a longer-slice task when it wakes. Asking
needs no privilege (it is a SCHED_OTHER attribute, not a priority); older kernels refuse it
and the process runs as before.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Final

_SYS_SCHED_SETATTR: Final = 314  # x86_64
_SCHED_OTHER: Final = 0
_ATTR: Final = struct.Struct("IIQiIQQQII")  # struct sched_attr, SCHED_ATTR_SIZE_VER1 (56)


def request_slice(slice_us: int) -> str:
    """Set this process's slice; returns "" on success, else why it was refused."""
    if os.uname().machine != "x86_64":
        return f"sched_setattr is only wired for x86_64, not {os.uname().machine}"
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(_ATTR.pack(_ATTR.size, _SCHED_OTHER, 0, os.nice(0), 0,
                                                  slice_us * 1000, 0, 0, 0, 0), _ATTR.size)
    if libc.syscall(_SYS_SCHED_SETATTR, 0, attr, 0) != 0:
        return os.strerror(ctypes.get_errno())
    return ""
