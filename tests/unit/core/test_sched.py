"""Scheduling: the slice the kernel uses, and the CPUs each process is pinned to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.sched import auto_cpus, cpus_for


def _slice_ns_in_child(slice_us: int) -> tuple[str, int]:
    """Ask in a child process (the test runner keeps its own slice) and read it back."""
    code = ("import json\nfrom pipeline.sched import request_slice\n"
            f"print(json.dumps(request_slice({slice_us})))\n"
            "line = [l for l in open('/proc/self/sched') if l.startswith('se.slice')][0]\n"
            "print(line.split(':')[1].strip())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return json.loads(out[0]), int(out[1])


@pytest.mark.skipif(not Path("/proc/self/sched").exists()
                    or "se.slice" not in Path("/proc/self/sched").read_text(),
                    reason="this kernel does not report se.slice")
def test_the_requested_slice_is_what_the_scheduler_uses() -> None:
    refused, slice_ns = _slice_ns_in_child(100)
    assert refused == ""
    assert slice_ns == 100_000


@pytest.mark.parametrize(("count", "layout"), [
    (1, {"strategy": None, "executor": None, "ingest": None, "ledger": None}),
    (2, {"strategy": {10}, "executor": {10}, "ingest": {11}, "ledger": {11}}),
    (3, {"strategy": {10}, "executor": {11}, "ingest": {12}, "ledger": {12}}),
    (6, {"strategy": {10}, "executor": {11}, "ingest": {12}, "ledger": {13, 14, 15}}),
])
def test_the_automatic_layout_keeps_the_ledger_off_the_tick_path(
        count: int, layout: dict[str, set[int] | None]) -> None:
    available = list(range(10, 10 + count))[::-1]  # any order, any numbering
    for process, cpus in layout.items():
        assert auto_cpus(process, available) == (None if cpus is None else frozenset(cpus))


def test_explicit_cpus_win_and_off_leaves_the_rest_alone() -> None:
    assert cpus_for("strategy", "off", {"strategy": (3,)}) == frozenset({3})
    assert cpus_for("ledger", "off", {"strategy": (3,)}) is None
    assert cpus_for("ledger", "auto", {}) == auto_cpus("ledger", sorted(os.sched_getaffinity(0)))


def _affinity_in_child(cpu: int) -> tuple[str, list[str]]:
    """Pin a child that already runs a second thread, start a third, read every thread's
    allowed CPUs back from /proc."""
    code = (
        "import json, os, threading\n"
        "from pathlib import Path\n"
        "from pipeline.sched import pin_process\n"
        "stop = threading.Event()\n"
        "before = threading.Thread(target=stop.wait); before.start()\n"
        f"refused = pin_process(frozenset({{{cpu}}}))\n"
        "after = threading.Thread(target=stop.wait); after.start()\n"
        "allowed = [line.split(':')[1].strip() for task in Path('/proc/self/task').iterdir()\n"
        "           for line in (task / 'status').read_text().splitlines()\n"
        "           if line.startswith('Cpus_allowed_list')]\n"
        "stop.set(); before.join(); after.join()\n"
        "print(json.dumps([refused, allowed]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    refused, allowed = json.loads(out)
    return refused, allowed


def test_pinning_covers_every_thread_of_the_process() -> None:
    cpu = max(os.sched_getaffinity(0))
    refused, allowed = _affinity_in_child(cpu)
    assert refused == ""
    assert allowed == [str(cpu)] * 3  # main thread, the one before and the one after


def test_a_cpu_outside_the_allowed_set_is_refused_not_raised() -> None:
    refused, allowed = _affinity_in_child(4095)
    assert refused  # the kernel's reason, for the log line
    assert len(allowed) == 3
