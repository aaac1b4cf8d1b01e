"""Which failures at start-up are the operator's to fix, so that supervisor stops retrying.

supervisor restarts a program whose exit code is not listed in ``exitcodes`` (0,2 here). A
process that cannot start because of its config or its environment (a data dir that is a
file, a path too long for an ipc socket, a port in use, a corrupted database, a replay file
that is missing or malformed) fails the same way on every retry: it exits
:data:`~pipeline.errors.EXIT_OPERATIONAL` with one line saying what is wrong. Anything else at
start-up is a bug and exits :data:`~pipeline.errors.EXIT_CRASH` with its traceback in the log.
"""

from __future__ import annotations

import sqlite3

import zmq

from pipeline.errors import PipelineError, TemporaryError

# SQLite errors that go away by themselves: another connection holds a lock for a while.
_TRANSIENT_SQLITE = ("locked", "busy")


def operator_problem(exc: BaseException) -> str | None:
    """One line describing ``exc`` if it is a config or environment problem, else None.

    Looks through the ``__cause__`` chain, because SQLAlchemy and our own wrappers raise
    their errors from the library error that says what is wrong.
    """
    for error in _chain(exc):
        if isinstance(error, TemporaryError):
            return None
        if isinstance(error, PipelineError):
            return str(error)
        if isinstance(error, sqlite3.DatabaseError):
            text = str(error)
            if any(word in text.lower() for word in _TRANSIENT_SQLITE):
                return None
            return f"database: {text}"
        if isinstance(error, zmq.ZMQError | OSError | UnicodeError):
            return str(error)
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__
    return seen
