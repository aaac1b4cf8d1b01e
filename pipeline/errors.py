"""Exceptions that tell the caller what to do next, and the exit codes they map to.

- :class:`BadInputError`: reject the input, count it, carry on.
- :class:`TemporaryError`: retry with back-off.
- :class:`OperationalError`: stop the process with a clear log line; an operator must act.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_OPERATIONAL: Final = 2  # config or environment is wrong: restarting will not help
EXIT_CRASH: Final = 3  # unexpected state in a loop where money moves: restart from durable state


class PipelineError(Exception):
    """Base class for the pipeline's own errors."""


class BadInputError(PipelineError):
    """Input (a feed message, a control request, a file) is malformed; reject and count it."""


class TemporaryError(PipelineError):
    """A dependency is briefly unavailable; retry with back-off."""


class OperationalError(PipelineError):
    """The process cannot run as configured; stop and tell the operator what to fix."""


class ConfigError(OperationalError):
    """A config value is invalid; the message names the key and the bad value."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"config {key} = {value!r}: {reason}")
        self.key = key
        self.value = value
