"""``pipeline backtest FILE...``: each file through the live strategy and risk code, with a report.

Per input file, in ``--out`` (default ``<data_dir>/backtest``): ``<name>.report.json`` and
``<name>.report.txt`` (deterministic: byte-identical for the same file and config),
``<name>.equity.png``, and ``<name>.timing.json`` (measured speed, which varies).
"""

from __future__ import annotations

import argparse
import json
import sys
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


def run(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipeline.backtest.engine import run_backtest
    from pipeline.backtest.plot import plot_equity
    from pipeline.backtest.report import equity_curve, format_table, summarise, timing_summary
    from pipeline.ingest.candles import TICKS_PER_CANDLE
    from pipeline.ingest.history import guess_format, load_ticks

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
        try:
            file_format = guess_format(path) if args.format == "auto" else args.format
            ticks = load_ticks(path, file_format, symbol_id, config.ingest.csv_columns,
                               config.ingest.trades_columns)
        except BadInputError as exc:
            print(f"pipeline backtest: {exc}", file=sys.stderr)
            code = EXIT_OPERATIONAL
            continue
        result = run_backtest(ticks, config)
        summary = summarise(result, initial, path.name)
        candles = None if file_format == "trades_csv" else len(ticks) // TICKS_PER_CANDLE
        timing = timing_summary(result, candles)
        stem = out_dir / path.stem
        table = format_table(summary)
        Path(f"{stem}.report.json").write_text(json.dumps(summary, indent=1) + "\n")
        Path(f"{stem}.report.txt").write_text(table)
        Path(f"{stem}.timing.json").write_text(json.dumps(timing, indent=1) + "\n")
        equity, _position = equity_curve(result, initial)
        plot_equity(Path(f"{stem}.equity.png"), result.ticks["source_ts_ns"], equity,
                    f"{path.name}: {config.strategy.name}")
        print(f"== {path}\n{table}timing: {json.dumps(timing)}\nwrote {stem}.report.json, "
              f".report.txt, .equity.png, .timing.json")
    return code
