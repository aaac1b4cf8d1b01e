"""Section f: backtest speed, candles per second.

f: the run phase (:func:`~pipeline.backtest.engine.run_backtest`: validation, strategy, risk
and paper fills, decisions in time order) for each built-in strategy, on the 4,320 bundled
1-minute candles repeated ``repeat`` times back to back (each copy re-timed after the
previous one and scaled to start where it ended, so the validator sees one continuous
market). f2: the whole ``pipeline backtest FILE --out DIR`` command on a year of real
candles, as a user times it, and the run phase alone on the same ticks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.ingest.candles import TICKS_PER_CANDLE, candles_to_ticks, load_bundled
from pipeline.records import SourceId, TickFlag


def backtest_trial(strategy_name: str, repeat: int = 25) -> float:
    """Candles per second of :func:`run_backtest` with ``strategy_name`` on the bundled
    candles repeated ``repeat`` times."""
    from pipeline.backtest.engine import run_backtest
    from pipeline.config import load_config

    bundled = load_bundled()
    candles = np.tile(bundled, repeat)
    growth = float(bundled["close"][-1] / bundled["open"][0])
    scale = np.repeat(growth ** np.arange(repeat), len(bundled))
    for column in ("open", "high", "low", "close"):
        candles[column] *= scale
    candles["open_time_ms"] = bundled["open_time_ms"][0] + np.arange(len(candles)) * 60_000
    ticks = candles_to_ticks(candles, 1, SourceId.REPLAY, TickFlag.REPLAY)
    config = load_config(None, environ={}, overrides={"strategy": {"name": strategy_name}})
    started = time.perf_counter()
    run_backtest(ticks, config)
    return len(candles) / (time.perf_counter() - started)


def year_file(directory: Path, n_candles: int, file_format: str = "json") -> tuple[Path, str]:
    """Write the benchmark's candle file (see :mod:`.year_candles`); (path, what it holds)."""
    from pipeline.bench.year_candles import (
        flat_zero_volume_runs,
        join_segments,
        source_segments,
        write_feather,
        write_json,
    )

    segments, names = source_segments()
    candles = join_segments(segments, n_candles)
    path = directory / f"year_{n_candles}.{file_format}"
    (write_json if file_format == "json" else write_feather)(candles, path)
    runs = flat_zero_volume_runs(candles)
    about = (f"{n_candles} candles from {len(names)} real files ({', '.join(names)}); "
             f"flat zero-volume runs (candles): {runs}")
    return path, about


def end_to_end_trial(path: Path, out_dir: Path) -> dict[str, Any]:
    """``pipeline backtest FILE --out DIR`` as a user times it: wall seconds, the command's
    own per-phase timing file, and the child's peak RSS (from ``wait4``, this child only)."""
    command = [sys.executable, "-m", "pipeline", "backtest", str(path), "--out", str(out_dir)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(child.pid, 0)
    wall_s = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr[-2000:]}")
    timing = json.loads((out_dir / f"{path.stem}.timing.json").read_text(encoding="utf-8"))
    return {"wall_s": wall_s, "peak_rss_mib": usage.ru_maxrss / 1024.0, "timing": timing}


def run_phase_trial(ticks: np.ndarray, config: PipelineConfig) -> float:
    """Candles per second of :func:`run_backtest` alone on already loaded ticks."""
    from pipeline.backtest.engine import run_backtest

    started = time.perf_counter()
    run_backtest(ticks, config)
    return len(ticks) / TICKS_PER_CANDLE / (time.perf_counter() - started)


def year_backtest(n_candles: int, trials: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Section f2: the whole ``pipeline backtest`` command on a year of candles, and the run
    phase alone; figures over ``trials`` runs."""
    from pipeline.bench.stats import Figure
    from pipeline.config import load_config
    from pipeline.ingest.history import load_ticks

    config = load_config(None, environ={})
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        directory = Path(tmp)
        for file_format in ("json", "feather"):
            path, about = year_file(directory, n_candles, file_format)
            out["input"] = about
            progress(f"f. pipeline backtest on {path.name}")
            runs = [end_to_end_trial(path, directory / f"out{i}") for i in range(trials)]
            row: dict[str, Any] = {
                "wall_s": Figure.of([r["wall_s"] for r in runs], "s").as_dict(),
                "candles_per_s": Figure.of([n_candles / r["wall_s"] for r in runs],
                                           "candles/s").as_dict(),
                "peak_rss_mib": Figure.of([r["peak_rss_mib"] for r in runs], "MiB").as_dict(),
                "timing": runs[-1]["timing"]}
            out[f"end_to_end_{file_format}"] = row
        ticks = load_ticks(path, "feather", config.strategy.symbol_id)
        progress("f. run phase alone")
        out["run_phase_candles_per_s"] = Figure.of(
            [run_phase_trial(ticks, config) for _ in range(trials)], "candles/s").as_dict()
    return out
