"""Children of ``pipeline run`` end with it.

A ``kill -9`` of the launcher must not leave four orphans trading on. Each child asks the
kernel for :data:`LAUNCHER_GONE` when its parent dies (``PR_SET_PDEATHSIG``, Linux) as its
first act, then checks that its parent is still the launcher that started it: a launcher
that died between the fork and that call would otherwise go unnoticed.

Why not SIGTERM: the kernel sends the parent-death signal each time the child is handed from
a dying thread of the launcher to the next (the launcher has ZeroMQ threads), so a child can
get it two or three times within milliseconds, and a second SIGTERM means "exit now, do not
drain". ``LAUNCHER_GONE`` asks for the same orderly drain as a first SIGTERM, however often
it comes.

Under supervisord no launcher pid is passed, and nothing here applies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Final

LAUNCHER_PID_ENV = "PIPELINE_LAUNCHER_PID"
LAUNCHER_GONE: Final = signal.SIGUSR1
_PR_SET_PDEATHSIG = 1


def spawn(cmd: Sequence[str], env: Mapping[str, str],
          pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start a child that will follow this process (see :func:`follow_launcher`)."""
    child_env = dict(env, **{LAUNCHER_PID_ENV: str(os.getpid())})
    return subprocess.Popen(list(cmd), env=child_env, stdin=subprocess.DEVNULL,
                            start_new_session=True, pass_fds=tuple(pass_fds))


def follow_launcher(environ: MutableMapping[str, str] = os.environ) -> bool:
    """In a child of :func:`spawn`: die with the launcher; False if it is already gone.

    The variable is removed so that a process this one starts does not inherit the check.
    """
    text = environ.pop(LAUNCHER_PID_ENV, None)
    if text is None:
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(LAUNCHER_GONE), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    return text.isdigit() and os.getppid() == int(text)
