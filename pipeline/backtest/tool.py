"""``pipeline backtest FILE...``: each file through the live strategy and risk code, with a report.

Per input file, in ``--out`` (default ``<data_dir>/backtest``), deterministic (byte-identical
for the same file and config): ``<name>.report.json``, ``<name>.report.txt``,
``<name>.trades.csv`` (one line per round trip) and ``<name>.equity.png``; and
``<name>.timing.json``, the measured time of every phase, which varies. With ``--grid``,
one backtest per parameter combination instead, ranked in ``<name>.sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.errors import EXIT_OK, EXIT_OPERATIONAL, BadInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path,
                        help="freqtrade JSON/feather candles, CSV candles or CSV trades")
    parser.add_argument("--format", default="auto",
                        choices=("auto", "json", "feather", "csv", "trades_csv", "npz"),
                        help="input format (default: by suffix)")
    parser.add_argument("--out", type=Path, help="output directory (default <data_dir>/backtest)")
    parser.add_argument("--symbol-id", type=int, help="symbol id of the ticks "
                        "(default strategy.symbol_id)")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="sweep a strategy parameter (repeatable): one backtest per "
                             "combination on all cores, ranked, written to <name>.sweep.json")
    parser.add_argument("--workers", type=int,
                        help="worker processes for --grid (default: all cores)")


def run(args: argparse.Namespace, config: PipelineConfig) -> int:
    started_s = time.perf_counter()  # before the heavy imports: they are part of the command
    from pipeline.backtest.engine import run_backtest
    from pipeline.backtest.metrics import gap_starts
    from pipeline.backtest.plot import plot_backtest
    from pipeline.backtest.report import equity_curve, format_table, gap_threshold_s, summarise
    from pipeline.backtest.sweep import format_ranking, parse_grid, run_sweep, sweep_json
    from pipeline.backtest.timing import PhaseClock
    from pipeline.backtest.trades import round_trips, write_trades_csv
    from pipeline.ingest.candles import TICKS_PER_CANDLE
    from pipeline.ingest.history import guess_format, load_ticks

    grid = parse_grid(args.grid) if args.grid else None  # a bad spec before any backtest
    out_dir: Path = args.out or config.paths.data_dir / "backtest"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission: before any backtest runs
        raise BadInputError(f"--out {out_dir}: cannot make the output directory: "
                            f"{exc.strerror or exc}") from exc
    symbol_id = args.symbol_id if args.symbol_id is not None else config.strategy.symbol_id
    quote = next((s.quote for s in config.symbols if s.id == symbol_id), "USDT")
    initial = float(config.ledger.initial_balances.get(quote, 0.0))
    code = EXIT_OK
    for path in args.files:
        clock = PhaseClock(started_s)
        try:
            with clock.phase("load"):
                file_format = guess_format(path) if args.format == "auto" else args.format
                ticks = load_ticks(path, file_format, symbol_id, config.ingest.csv_columns,
                                   config.ingest.trades_columns)
        except BadInputError as exc:
            print(f"pipeline backtest: {exc}", file=sys.stderr)
            code = EXIT_OPERATIONAL
            continue
        if grid is not None:
            rows = run_sweep(ticks, config, grid, workers=args.workers, source=path.name,
                             initial_quote=initial)
            stem = out_dir / path.stem
            Path(f"{stem}.sweep.json").write_text(json.dumps(sweep_json(rows), indent=1) + "\n")
            print(f"== {path}\n{format_ranking(rows)}wrote {stem}.sweep.json")
            continue
        with clock.phase("run"):  # validation and the replay: the engine does both
            result = run_backtest(ticks, config)
        candles = None if file_format == "trades_csv" else len(ticks) // TICKS_PER_CANDLE
        stem = out_dir / path.stem
        with clock.phase("report"):
            curve = equity_curve(result, initial)
            book = round_trips(result.reports)
            summary = summarise(result, initial, path.name, config=config, candles=candles,
                                quote=quote, curve=curve, book=book)
            table = format_table(summary)
            Path(f"{stem}.report.json").write_text(json.dumps(summary, indent=1) + "\n")
            Path(f"{stem}.report.txt").write_text(table)
        with clock.phase("trades_csv"):
            write_trades_csv(Path(f"{stem}.trades.csv"), book.trades)
        with clock.phase("png"):
            times_ns = result.ticks["source_ts_ns"]
            gaps = gap_starts(times_ns, gap_threshold_s(config))
            plot_backtest(Path(f"{stem}.equity.png"), times_ns=times_ns,
                          prices=result.ticks["price"], equity=curve[0], reports=result.reports,
                          gaps=gaps, initial_quote=initial, quote=quote,
                          title=f"{path.name}: {config.strategy.name}\n"
                                + " ".join(f"{k}={v}" for k, v in
                                           summary["parameters"].items()))
        timing = clock.summary(result, candles)
        Path(f"{stem}.timing.json").write_text(json.dumps(timing, indent=1) + "\n")
        print(f"== {path}\n{table}timing: {json.dumps(timing)}\nwrote {stem}.report.json, "
              f".report.txt, .trades.csv, .equity.png, .timing.json")
    return code
