"""A tiny shared test kit: poll for a condition instead of sleeping, and name things uniquely.

Tests synchronise on observable state with a deadline (``eventually``) rather than fixed
sleeps, so they are fast on an idle machine and still pass on a loaded two-core CI box.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SHM_ROOT = Path("/dev/shm")


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0,
               interval_s: float = 0.005, message: str = "") -> None:
    """Poll ``condition`` until it is true; raise AssertionError once ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            what = message or getattr(condition, "__name__", repr(condition))
            raise AssertionError(f"condition not met within {timeout_s} s: {what}")
        time.sleep(interval_s)


def unique_name(prefix: str) -> str:
    """A name no other test (or concurrent test run) uses, e.g. for a ring segment."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextmanager
def scratch_shm_dir(prefix: str = "pltest") -> Iterator[Path]:
    """A private directory in /dev/shm (real shared memory) removed afterwards, so rings
    made by a test never collide with or outlive it."""
    path = SHM_ROOT / unique_name(prefix)
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering with ``handler``; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
