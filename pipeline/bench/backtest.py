"""Section f: backtest speed, candles per second through a strategy and the risk engine.

There is no ``pipeline backtest`` command in this build yet, so this measures its core
directly: the bundled 1-minute candles turned into ticks (:func:`candles_to_ticks`, four per
candle; the 4,320 bundled candles repeated ``repeat`` times so one pass
lasts long enough to time), fed through ``on_ticks`` of each built-in strategy and the risk engine's
``on_ticks`` and ``check`` in batches of 65,536 ticks, as a backtest would. Candles/s counts
the candles behind the ticks; the conversion is included in the time.
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
from typing import Any, Final

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.ingest.candles import TICKS_PER_CANDLE, candles_to_ticks, load_bundled
from pipeline.records import SourceId, TickFlag
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.loader import BUILT_INS
from pipeline.strategy.risk import RiskEngine

BATCH_TICKS: Final = 65_536


def backtest_trial(strategy_name: str, repeat: int = 25) -> float:
    """Candles per second of one pass over the bundled candles, repeated."""
    candles = np.tile(load_bundled(), repeat)
    strategy: Any = BUILT_INS[strategy_name]
    strategy = strategy(symbol_id=1)  # the built-ins take symbol_id (see the loader)
    risk = RiskEngine(RiskConfig(max_orders_per_s=1e9))
    started = time.perf_counter()
    ticks = candles_to_ticks(candles, 1, SourceId.REPLAY, TickFlag.REPLAY)
    ticks["seq"] = np.arange(len(ticks), dtype=np.uint64)
    ticks["ingest_ns"] = ticks["source_ts_ns"]
    for start in range(0, len(ticks), BATCH_TICKS):
        batch = ticks[start:start + BATCH_TICKS]
        risk.on_ticks(batch)
        intents = strategy.on_ticks(batch)
        if len(intents):
            risk.check(intents, int(batch["source_ts_ns"][-1]))
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
