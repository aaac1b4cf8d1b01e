"""Structured JSON logs: one line per event with process, pid and environment.

Each process logs to ``<data_dir>/logs/<process>.log``, rotated at midnight UTC and kept for
``log.keep_days``; standalone processes (under supervisor) also log to stderr, which
supervisor captures. Use ``log.info("what happened", extra={"event": "dotted.name", ...})``.
Timestamps are ISO 8601 in UTC with milliseconds (``2026-11-29T09:10:34.893Z``): a log
shipper parses them without guessing the host's zone. A process that cannot start writes
its reason there too (:func:`log_start_failure`), not only to stderr.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from pythonjsonlogger.json import JsonFormatter

_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


class UtcJsonFormatter(JsonFormatter):
    """JSON lines whose ``time`` is ISO 8601 UTC with milliseconds and a ``Z``."""

    def formatTime(self, record: logging.LogRecord,  # noqa: N802 (logging's name)
                   datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


class _ContextFilter(logging.Filter):
    """Stamp every record with who wrote it, so merged log streams stay readable."""

    def __init__(self, process: str, env: str) -> None:
        super().__init__()
        self._process = process
        self._env = env

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_name = self._process
        record.env = self._env
        record.pid = os.getpid()
        if not hasattr(record, "event"):
            record.event = record.name
        return True


_CHATTY_LIBRARIES = ("httpx2", "httpx", "httpcore", "hpack")


def setup_logging(process: str, env: str, log_dir: Path | None, *, level: str = "INFO",
                  keep_days: int = 30, to_stderr: bool = True) -> logging.Logger:
    """Configure the root logger for this process and return the process's logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = UtcJsonFormatter(_FIELDS, rename_fields={
        "asctime": "time", "levelname": "level", "process_name": "process"})
    context = _ContextFilter(process, env)
    handlers: list[logging.Handler] = []
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.TimedRotatingFileHandler(
            log_dir / f"{process}.log", when="midnight", backupCount=keep_days, utc=True))
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(context)
        root.addHandler(handler)
    root.setLevel(level)
    for chatty in _CHATTY_LIBRARIES:  # a line per HTTP request would drown the events
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(f"pipeline.{process}")


def log_start_failure(process: str, env: str, log_dir: Path, problem: str) -> None:
    """Write why ``process`` cannot start to its JSON log, for a process that failed before
    its logging was set up (a config that does not load). The caller still prints it to
    stderr: supervisor's ``<process>.stderr.log`` and a terminal see it too."""
    try:
        log = setup_logging(process, env, log_dir, to_stderr=False)
    except OSError:
        return  # the log dir itself is the problem: stderr is all there is
    log.error("cannot start: %s", problem, extra={"event": "process.start_failed"})
    for handler in logging.getLogger().handlers:
        handler.flush()


_TAIL_BYTES = 64 * 1024  # far more than the last few events of a process that just exited


def last_error(log_file: Path, pid: int) -> str | None:
    """The last error a process (``pid``) wrote to its JSON log, for ``pipeline run`` to show.

    Only the file's tail is read; a crash's message gains the last line of its traceback.
    """
    try:
        with log_file.open("rb") as handle:
            handle.seek(max(0, log_file.stat().st_size - _TAIL_BYTES))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by the tail, or not JSON
        if not isinstance(record, dict) or record.get("pid") != pid \
                or record.get("level") not in ("ERROR", "CRITICAL"):
            continue
        message = str(record.get("message", ""))
        trace = str(record.get("exc_info") or "").strip().splitlines()
        return f"{message}: {trace[-1]}" if trace else message
    return None
