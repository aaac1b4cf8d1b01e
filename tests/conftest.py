"""Shared fixtures; also puts this directory on sys.path so tests can ``import testkit``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from testkit import scratch_shm_dir  # noqa: E402  (needs the path above)

# The throwaway PostgreSQL server fixtures (postgres_server, postgres_url) for any test.
pytest_plugins = ("pg_server",)


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A per-test directory in /dev/shm for ring segments, removed after the test."""
    with scratch_shm_dir() as path:
        yield path


@pytest.fixture(autouse=True)
def _restore_umask() -> Iterator[None]:
    """``pipeline.cli.main`` sets the process umask to 077 (private files); a test that calls
    it in-process must not change the modes of files later tests create."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)
