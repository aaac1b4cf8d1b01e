"""request_slice: the kernel schedules the process with the slice it asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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
