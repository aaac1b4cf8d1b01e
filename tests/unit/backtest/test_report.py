"""The report and the PNG on the bundled candles: metrics, gaps, parameters, determinism."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.backtest.engine import BacktestRun, run_backtest
from pipeline.backtest.metrics import drawdown, gap_starts
from pipeline.backtest.plot import build_figure, plot_backtest
from pipeline.backtest.report import equity_curve, format_table, summarise
from pipeline.cli import main
from pipeline.config import PipelineConfig, load_config
from pipeline.ingest.candles import candles_to_ticks, load_bundled
from pipeline.records import SourceId, TickFlag
from pipeline.strategy.ema_cross import EmaCross

HOUR_NS = 3600 * 1_000_000_000
FAST = {"strategy": {"params": {"fast": 8, "slow": 40}}, "risk": {"max_orders_per_s": 1000.0}}
CUT = slice(1000, 1080)  # 80 one-minute candles removed: a gap like 24 March 2023's


def _run(overrides: dict[str, Any], cut: bool = False) -> tuple[BacktestRun, PipelineConfig]:
    candles = load_bundled()
    if cut:
        candles = np.delete(candles, np.arange(CUT.start, CUT.stop))
    config = load_config(environ={}, overrides=overrides)
    ticks = candles_to_ticks(candles, 1, SourceId.REPLAY, TickFlag.REPLAY)
    return run_backtest(ticks, config), config


def test_drawdown_duration_runs_from_the_peak_to_the_recovery() -> None:
    times_ns = np.arange(7) * HOUR_NS
    down = drawdown(times_ns, np.array([100.0, 110.0, 105.0, 99.0, 104.0, 111.0, 108.0]))
    assert down.max_abs == pytest.approx(11.0)
    assert down.max_pct == pytest.approx(10.0)
    assert (down.peak_index, down.trough_index, down.end_index) == (1, 3, 5)
    assert down.duration_s == 4 * 3600
    assert down.longest_s == 4 * 3600
    unrecovered = drawdown(times_ns[:4], np.array([100.0, 90.0, 95.0, 99.0]))
    assert unrecovered.end_index is None
    assert unrecovered.duration_s == 3 * 3600  # to the last tick


def test_gaps_use_the_threshold_or_twice_the_median_spacing() -> None:
    times_ns = np.array([0, 60, 120, 400, 460, 1000]) * 1_000_000_000
    assert gap_starts(times_ns, 300.0).tolist() == [4]
    assert gap_starts(times_ns, None).tolist() == [2, 4]


def test_report_echoes_parameters_buy_and_hold_and_iso_dates() -> None:
    run, config = _run(FAST)
    summary = summarise(run, 100_000.0, "bundled", config=config, candles=4320)
    # Every constructor parameter, the defaults included, as the engine built the strategy.
    assert set(summary["parameters"]) == set(inspect.signature(EmaCross).parameters)
    assert {"fast": 8, "slow": 40, "quantity": 1.0, "symbol_id": 1,
            "limit_slippage_bps": 20.0}.items() <= summary["parameters"].items()
    assert (summary["fee_bps"], summary["slippage_bps"]) == (5.0, 2.0)
    assert summary["from"] == "2025-05-04T15:33:00Z"
    assert summary["to"] == "2025-05-07T15:32:45Z"
    prices = run.ticks["price"]
    hold = (prices[-1] / prices[0] - 1.0) * 100.0
    assert summary["buy_and_hold_return_pct"] == round(float(hold), 6)
    assert summary["buy_and_hold_pnl"] == round(1000.0 * float(hold), 6)
    assert summary["round_trips"] > 20
    assert summary["fills"] >= summary["round_trips"]
    assert summary["wins"] + summary["losses"] <= summary["round_trips"]
    equity, _position = equity_curve(run, 100_000.0)
    assert summary["pnl"] == round(float(equity[-1]) - 100_000.0, 6)
    for key in ("sharpe", "sortino", "max_drawdown", "win_rate_pct", "profit_factor"):
        assert isinstance(summary[key], float), key
    table = format_table(summary)
    assert "| Win rate" in table
    assert "2025-05-04T15:33:00Z" in table


def test_a_removed_stretch_is_a_gap_in_the_report_and_a_break_in_the_png() -> None:
    run, config = _run(FAST, cut=True)
    validation = summarise(run, 100_000.0, "cut", config=config)["validation"]
    assert validation["gaps"] == 1
    assert validation["longest_gap_s"] == 81 * 60 - 45  # last tick at +45 s of candle 999
    first_ns = int(load_bundled()["open_time_ms"][0]) * 1_000_000
    before_ns = first_ns + (CUT.start - 1) * 60 * 1_000_000_000 + 45 * 1_000_000_000
    assert validation["longest_gap_from"] == np.datetime_as_string(
        np.datetime64(before_ns, "ns"), unit="s") + "Z"
    assert validation["suspect_ticks"] == 1
    assert set(validation["ticks_rejected"]) >= {"jump", "halt", "duplicate"}
    equity, _position = equity_curve(run, 100_000.0)
    times_ns = run.ticks["source_ts_ns"]
    figure = build_figure(times_ns=times_ns, prices=run.ticks["price"], equity=equity,
                          reports=run.reports, gaps=gap_starts(times_ns, 300.0),
                          initial_quote=100_000.0, title="cut")
    # Three stacked panels; the equity panel may add a right-hand scale (a twin axes).
    rows = [axes.get_subplotspec().rowspan.start for axes in figure.axes]
    assert sorted(set(rows)) == [0, 1, 2]
    assert len(figure.axes) in (3, 4)
    price_line = figure.axes[0].lines[0]
    assert np.isnan(np.asarray(price_line.get_ydata(), dtype=float)).sum() == 1
    for axes in figure.axes[:3]:
        assert axes.collections, "gap not shaded"
    # Decimated (a year has millions of ticks): the line still breaks at the gap.
    small = build_figure(times_ns=times_ns, prices=run.ticks["price"], equity=equity,
                         reports=run.reports, gaps=gap_starts(times_ns, 300.0),
                         initial_quote=100_000.0, title="cut", buckets=200)
    ydata = np.asarray(small.axes[1].lines[0].get_ydata(), dtype=float)
    assert len(ydata) <= 2 * 200 + 4
    assert np.isnan(ydata).sum() == 1


def test_without_the_config_the_report_says_so_and_judges_gaps_by_the_data() -> None:
    run, _config = _run(FAST, cut=True)
    summary = summarise(run, 100_000.0, "cut")
    assert (summary["strategy"], summary["parameters"], summary["fee_bps"]) == (None,) * 3
    assert summary["validation"]["gap_threshold_s"] is None
    assert summary["validation"]["gaps"] == 1  # 81 minutes against a 15 s median spacing
    assert "2x median" in format_table(summary)


def test_report_and_png_are_byte_identical_across_runs(tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        run, config = _run(FAST, cut=True)
        summary = summarise(run, 100_000.0, "cut", config=config, candles=4240)
        equity, _position = equity_curve(run, 100_000.0)
        png = tmp_path / f"{name}.png"
        plot_backtest(png, times_ns=run.ticks["source_ts_ns"], prices=run.ticks["price"],
                      equity=equity, reports=run.reports,
                      gaps=gap_starts(run.ticks["source_ts_ns"], 300.0),
                      initial_quote=100_000.0, title="cut")
        assert png.stat().st_size > 10_000
        outputs.append((json.dumps(summary, indent=1), format_table(summary), png.read_bytes()))
    assert outputs[0] == outputs[1]


def test_cli_times_every_phase_and_writes_the_trades(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[2] / "data" / "SOL_USDT-1m-2021-head300.json"
    assert main(["backtest", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                 str(data)]) == 0
    timing = json.loads((tmp_path / "o" / f"{data.stem}.timing.json").read_text())
    assert set(timing["phases_s"]) == {"load", "validate", "run", "report", "trades_csv", "png"}
    assert timing["peak_rss_mib"] > 0
    assert timing["total_s"] >= timing["file_s"] >= sum(timing["phases_s"].values()) - 1e-3
    report = json.loads((tmp_path / "o" / f"{data.stem}.report.json").read_text())
    trades = (tmp_path / "o" / f"{data.stem}.trades.csv").read_text().splitlines()
    assert len(trades) == report["round_trips"] + 1
