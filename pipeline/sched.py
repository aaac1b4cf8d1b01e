"""Where and how the Linux scheduler runs a pipeline process: its CPUs and its time slice.

**CPUs.** On two vCPUs every process wakes once per tick and a woken process often finds
both taken. Pinning the two readers of the tick path (strategy and executor) to one CPU and
ingest and the ledger to the other keeps the ledger's commits off the CPU the decision and
the send run on; measured with per-hop stamps at 1,000 ticks/s: tick-to-order p99 0.73-0.85
ms against 0.98-2.2 ms unpinned (README, Benchmarks). With more CPUs each tick-path process
gets its own. ``run.pin = "off"`` leaves placement to the kernel; ``run.cpus`` overrides
the layout per process.

**Slice.**
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
from collections.abc import Mapping, Sequence
from pathlib import Path
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


def auto_cpus(process: str, available: Sequence[int]) -> frozenset[int] | None:
    """The CPUs ``process`` gets from the automatic layout; None: no pinning (one CPU)."""
    cpus = sorted(available)
    if len(cpus) < 2:
        return None
    if len(cpus) == 2:
        slots = {"strategy": [0], "executor": [0], "ingest": [1], "ledger": [1]}
    elif len(cpus) == 3:
        slots = {"strategy": [0], "executor": [1], "ingest": [2], "ledger": [2]}
    else:
        slots = {"strategy": [0], "executor": [1], "ingest": [2],
                 "ledger": list(range(3, len(cpus)))}
    return frozenset(cpus[i] for i in slots[process])


def cpus_for(process: str, pin: str, cpus: Mapping[str, Sequence[int]]) -> frozenset[int] | None:
    """The CPUs to pin ``process`` to under ``run.pin`` and ``run.cpus``; None: leave it."""
    if process in cpus:
        return frozenset(cpus[process])
    if pin == "off":
        return None
    return auto_cpus(process, sorted(os.sched_getaffinity(0)))


def pin_process(cpus: frozenset[int]) -> str:
    """Pin every thread of this process (threads started later inherit it); returns "" on
    success, else why it was refused (a CPU outside this container's set, say)."""
    try:
        for task in Path("/proc/self/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""
