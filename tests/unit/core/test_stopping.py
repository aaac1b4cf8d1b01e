"""A draining reader waits for its ring's writer (a real process) to close the ring or exit.

The writer is a child process holding a real ring in a scratch /dev/shm directory; it acts on
lines sent to its stdin, so every step is ordered without sleeps.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import eventually

from pipeline.records import REPORT_DTYPE
from pipeline.ring import RingReader, RingSpec
from pipeline.stopping import (
    STOP_BUDGETS,
    UpstreamWait,
    drain_timeout_s,
    process_gone,
    upstream_wait_s,
)

RUN_ID = uuid.uuid4()
_WRITER = textwrap.dedent("""
    import os, sys, uuid
    import numpy as np
    from pathlib import Path
    from pipeline.records import REPORT_DTYPE
    from pipeline.ring import RingSpec, RingWriter
    spec = RingSpec(sys.argv[1], REPORT_DTYPE, 64, lossless=True, readers=("ledger",))
    writer = RingWriter(spec, env="paper", run_id=uuid.UUID(sys.argv[3]),
                        shm_dir=Path(sys.argv[2]))
    writer.write(np.zeros(1, dtype=REPORT_DTYPE))
    print("written", flush=True)
    for command in sys.stdin:
        if command.strip() == "close":
            writer.close()
            print("closed", flush=True)
        elif command.strip() == "die":
            os._exit(0)  # no close: like a writer killed mid-drain
""")


def _spec() -> RingSpec:
    return RingSpec("reports", REPORT_DTYPE, 64, lossless=True, readers=("ledger",))


@pytest.fixture
def reader(shm_dir: Path) -> Iterator[RingReader]:
    reader = RingReader(_spec(), "ledger", env="paper", run_id=RUN_ID, shm_dir=shm_dir)
    yield reader
    reader.close()


@pytest.fixture
def writer(shm_dir: Path, reader: RingReader) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen([sys.executable, "-c", _WRITER, "reports", str(shm_dir),
                           str(RUN_ID)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "written"
            yield child
        finally:
            if child.poll() is None:
                child.kill()


def _send(child: subprocess.Popen[str], command: str) -> None:
    assert child.stdin is not None
    child.stdin.write(command + "\n")
    child.stdin.flush()


def _wait(timeout_s: float = 30.0) -> UpstreamWait:
    return UpstreamWait("executor", timeout_s, logging.getLogger("test"))


def test_a_ring_no_writer_ever_opened_is_finished_at_once(reader: RingReader) -> None:
    wait = _wait()
    assert wait.finished(reader)
    assert wait.outcome == "absent"


def test_a_writer_that_closes_the_ring_in_order_is_finished(
        reader: RingReader, writer: subprocess.Popen[str]) -> None:
    wait = _wait()
    assert reader.writer_pid == writer.pid
    assert not wait.finished(reader)  # running, and it may still write
    assert len(reader.read(10)) == 1  # drained: the writer may mark the ring closed
    _send(writer, "close")
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "closed"
    assert wait.finished(reader)
    assert wait.outcome == "closed"
    assert writer.poll() is None  # finished while the writer still runs


def test_a_writer_that_died_is_finished_even_before_it_is_reaped(
        reader: RingReader, writer: subprocess.Popen[str]) -> None:
    wait = _wait()
    assert not wait.finished(reader)
    _send(writer, "die")
    # Not waited for: the child stays a zombie, which kill(pid, 0) still finds.
    eventually(lambda: wait.finished(reader), timeout_s=30, message="writer seen gone")
    assert wait.outcome == "exited"
    assert process_gone(writer.pid)
    assert reader.available() == 1  # what it wrote before dying is there to read


def test_a_writer_that_keeps_running_is_left_after_the_wait(
        reader: RingReader, writer: subprocess.Popen[str]) -> None:
    wait = _wait(timeout_s=0.2)
    started = time.monotonic()
    eventually(lambda: wait.finished(reader), timeout_s=30, message="the wait gave up")
    assert wait.outcome == "timeout"
    assert time.monotonic() - started >= 0.2
    assert writer.poll() is None


def test_each_stage_waits_past_the_drain_of_the_stage_before() -> None:
    stop_timeout_s = 15.0
    assert upstream_wait_s("ledger", stop_timeout_s) > drain_timeout_s("executor",
                                                                       stop_timeout_s)
    assert upstream_wait_s("executor", stop_timeout_s) < drain_timeout_s("executor",
                                                                         stop_timeout_s)
    for process, budget in STOP_BUDGETS.items():
        assert 0 <= budget.upstream_share < budget.drain_share < 1, process
