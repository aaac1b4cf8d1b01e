"""Measure the whole pipeline's peak memory: run ``pipeline run`` and sample its process tree.

Usage: .venv/bin/python tools/peak_memory.py [seconds]. Reports the peak of the summed RSS
(counts shared ring pages once per process: an upper bound) and of the summed PSS (shared
pages split between their users: what a cgroup limit such as Docker's 1 GB sees, roughly).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import psutil


def main() -> int:
    duration_s = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    with tempfile.TemporaryDirectory() as data_dir:
        run = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--data-dir", data_dir,
                                "--duration", str(duration_s)], stdout=subprocess.DEVNULL)
        root = psutil.Process(run.pid)
        peak_rss = peak_pss = 0
        peak_count = 0
        while run.poll() is None:
            rss = pss = 0
            procs = [root, *root.children(recursive=True)]
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss += info.rss
                pss += info.pss
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            peak_count = max(peak_count, len(procs))
            time.sleep(0.2)
    print(f"processes: {peak_count}  peak summed RSS: {peak_rss / 2**20:.0f} MiB  "
          f"peak summed PSS: {peak_pss / 2**20:.0f} MiB  (run of {duration_s:g} s)")
    return run.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
