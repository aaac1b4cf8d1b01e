"""Parameter sweeps: one backtest per combination of strategy parameters, ranked.

``pipeline backtest FILE --grid fast=10,20,40 --grid slow=50,100,200`` runs all nine
combinations. Each is the run's config with ``strategy.params`` updated; the strategy's own
constructor judges it, so an invalid combination (``fast >= slow``) becomes a row with its
error instead of stopping the sweep.

Backtests are CPU-bound Python, so they run in worker processes (one per core by default).
The ``spawn`` start method gives each worker a fresh interpreter: nothing inherited from a
parent that may hold threads (numpy's, a logger's) in a locked state. The ticks go to each
worker once, through the pool's initializer; a task carries only its parameters. Every row
is a pure function of (ticks, config, parameters), and rows come back in combination order,
so the result is the same whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.report import summarise
from pipeline.config import PipelineConfig
from pipeline.errors import BadInputError, ConfigError
from pipeline.records import OrderStatus
from pipeline.strategy.loader import load_strategy

Value = int | float | str | bool
Grid = dict[str, list[Value]]

DEFAULT_METRIC: Final = "pnl"
# Metrics where less is better; every other metric ranks highest first.
LOWER_IS_BETTER: Final = frozenset({"max_drawdown", "max_drawdown_pct"})


@dataclass(frozen=True)
class SweepRow:
    """One combination's outcome: its summary (without the fills list) or why it did not run."""

    params: dict[str, Value]
    summary: dict[str, Any] | None
    fills: int
    error: str | None = None


def parse_grid(specs: Sequence[str]) -> Grid:
    """``["fast=10,20", "slow=50"]`` -> ``{"fast": [10, 20], "slow": [50]}``.

    Each value is read as an int, else a float, else ``true``/``false``, else kept as text.
    """
    grid: Grid = {}
    for spec in specs:
        name, equals, values = spec.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise BadInputError(f"--grid {spec!r}: expected name=value1,value2,...")
        if name in grid:
            raise BadInputError(f"--grid {spec!r}: {name} is already in the grid; give it once")
        texts = [text.strip() for text in values.split(",")]
        if texts == [""]:
            raise BadInputError(f"--grid {spec!r}: no values for {name}")
        if "" in texts:
            raise BadInputError(f"--grid {spec!r}: an empty value in the list")
        parsed = [_parse_value(spec, text) for text in texts]
        # By type as well as value: 1, 1.0 and true are equal in Python but not as parameters.
        if len({(type(v), v) for v in parsed}) != len(parsed):
            raise BadInputError(f"--grid {spec!r}: a value is repeated")
        grid[name] = parsed
    return grid


def combinations(grid: Grid) -> list[dict[str, Value]]:
    """The cartesian product, in the grid's order: the first parameter varies slowest.

    ``{"fast": [10, 20], "slow": [50, 100]}`` gives fast=10 slow=50, fast=10 slow=100,
    fast=20 slow=50, fast=20 slow=100. An empty grid is one combination: no change.
    """
    names = list(grid)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(grid[name] for name in names))]


def run_sweep(ticks: np.ndarray, config: PipelineConfig, grid: Grid, *,
              workers: int | None = None, source: str,
              initial_quote: float | None = None) -> list[SweepRow]:
    """One row per combination, in :func:`combinations` order; rank them with :func:`rank`.

    ``workers`` defaults to the number of cores; with one worker (or one valid combination)
    the backtests run in this process. ``initial_quote`` defaults to the ledger's starting
    balance in the quote currency of ``strategy.symbol_id``, as the backtest tool does.
    """
    if workers is not None and workers < 1:
        raise BadInputError(f"workers must be >= 1, got {workers}")
    if initial_quote is None:
        initial_quote = default_initial_quote(config)
    combos = combinations(grid)
    # Judged here, before any worker starts: building a strategy is cheap and deterministic,
    # and a combination it refuses needs no backtest.
    errors = [_refusal(config, combo) for combo in combos]
    runnable = [combo for combo, error in zip(combos, errors, strict=True) if error is None]
    job = _Job(ticks, config, initial_quote, source)
    count = min(workers or os.cpu_count() or 1, len(runnable))
    if count <= 1:
        done = [job.run(combo) for combo in runnable]
    else:
        with ProcessPoolExecutor(max_workers=count,
                                 mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(job,)) as pool:
            done = list(pool.map(_run_in_worker, runnable))
    results = iter(done)
    return [SweepRow(combo, None, 0, error) if error is not None else next(results)
            for combo, error in zip(combos, errors, strict=True)]


def default_initial_quote(config: PipelineConfig) -> float:
    """The ledger's starting balance in the quote currency of the traded symbol."""
    quote = next((s.quote for s in config.symbols if s.id == config.strategy.symbol_id), "USDT")
    return float(config.ledger.initial_balances.get(quote, 0.0))


def rank(rows: Sequence[SweepRow], metric: str = DEFAULT_METRIC) -> list[SweepRow]:
    """Best first by ``metric``; ties by the parameter values; no value, then errors, last.

    Highest first, except for :data:`LOWER_IS_BETTER` metrics. The order is total, so the
    same rows always rank the same way.
    """
    summaries = [row.summary for row in rows if row.summary is not None]
    if summaries and not any(metric in summary for summary in summaries):
        known = sorted({key for summary in summaries for key, value in summary.items()
                        if _number(value) is not None})
        raise BadInputError(f"cannot rank by {metric!r}; one of {', '.join(known)}")
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(row: SweepRow) -> tuple[int, float, tuple[tuple[int, Value, str], ...]]:
        params = tuple(_value_key(value) for value in row.params.values())
        if row.summary is None:
            return (2, 0.0, params)
        value = _number(row.summary.get(metric))
        return (1, 0.0, params) if value is None else (0, sign * value, params)

    return sorted(rows, key=key)


def format_ranking(rows: Sequence[SweepRow], metric: str = DEFAULT_METRIC) -> str:
    """The ranked rows as an aligned text table; a combination that did not run shows why."""
    header = ("rank", "params", "pnl", "return %", "fills", "max drawdown", "sharpe")
    table: list[tuple[str, ...]] = [header]
    for number, row in enumerate(rank(rows, metric), start=1):
        params = " ".join(f"{name}={_text(value)}" for name, value in row.params.items())
        if row.summary is None:
            table.append((str(number), params, f"error: {row.error}"))
            continue
        get = row.summary.get
        table.append((str(number), params, _text(get("pnl")), _text(get("return_pct")),
                      str(row.fills), _text(get("max_drawdown")), _text(get("sharpe"))))
    ran = [line for line in table if len(line) == len(header)]
    widths = [max(len(line[i]) for line in (table if i < 2 else ran)) for i in range(len(header))]
    order = "lowest" if metric in LOWER_IS_BETTER else "highest"
    text = [f"ranked by {metric}, {order} first"]
    for line in table:
        cells = [line[0].rjust(widths[0]), line[1].ljust(widths[1])]
        if len(line) == len(header):
            cells += [cell.rjust(width) for cell, width in zip(line[2:], widths[2:], strict=True)]
        else:
            cells.append(line[2])
        text.append("  ".join(cells).rstrip())
    return "\n".join(text) + "\n"


def sweep_json(rows: Sequence[SweepRow], metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """The ranked rows for ``<stem>.sweep.json``: deterministic, no measured timings."""
    ranked = rank(rows, metric)
    return {
        "metric": metric,
        "order": "ascending" if metric in LOWER_IS_BETTER else "descending",
        "combinations": len(ranked),
        "errors": sum(row.error is not None for row in ranked),
        "rows": [{"rank": number, "params": row.params, "fills": row.fills,
                  "error": row.error, "summary": row.summary}
                 for number, row in enumerate(ranked, start=1)],
    }


@dataclass(frozen=True)
class _Job:
    """What every combination shares; sent to each worker once."""

    ticks: np.ndarray
    config: PipelineConfig
    initial_quote: float
    source: str

    def run(self, combo: dict[str, Value]) -> SweepRow:
        """Backtest one combination (already judged valid by :func:`_refusal`)."""
        config = _with_params(self.config, combo)
        run = run_backtest(self.ticks, config)
        summary = summarise(run, self.initial_quote, self.source, config=config)
        fills = int(np.count_nonzero(run.reports["status"] == OrderStatus.FILLED))
        return SweepRow(combo, summary, fills)


# Set once per worker process by the pool's initializer: the only way it can hand its
# argument to the tasks that follow. Never set in the parent.
_worker_job: _Job | None = None


def _start_worker(job: _Job) -> None:
    global _worker_job  # noqa: PLW0603 - per-process state is what an initializer is for
    _worker_job = job


def _run_in_worker(combo: dict[str, Value]) -> SweepRow:
    assert _worker_job is not None, "the pool initializer did not run"
    return _worker_job.run(combo)


def _with_params(config: PipelineConfig, combo: dict[str, Value]) -> PipelineConfig:
    strategy = dataclasses.replace(config.strategy, params={**config.strategy.params, **combo})
    return dataclasses.replace(config, strategy=strategy)


def _refusal(config: PipelineConfig, combo: dict[str, Value]) -> str | None:
    """Why this combination cannot run (the config's or the strategy's words), or None."""
    try:
        load_strategy(_with_params(config, combo).strategy)
    except ConfigError as exc:
        return str(exc)
    return None


def _parse_value(spec: str, text: str) -> Value:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        lowered = text.lower()
        return lowered == "true" if lowered in ("true", "false") else text
    if not math.isfinite(number):
        raise BadInputError(f"--grid {spec!r}: {text} is not a finite number")
    return number


def _value_key(value: Value) -> tuple[int, Value, str]:
    """Orders any two values of one parameter: booleans, then numbers, then text."""
    order = 0 if isinstance(value, bool) else 2 if isinstance(value, str) else 1
    return (order, value, type(value).__name__)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: object) -> str:
    return "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
