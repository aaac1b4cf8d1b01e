"""``pipeline backtest``: the live strategy/risk/venue code over real candles, deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.report import equity_curve, summarise
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.ingest.history import load_ticks
from pipeline.records import OrderStatus

DATA = Path(__file__).resolve().parents[2] / "data"
JSON = DATA / "SOL_USDT-1m-2021-head300.json"
TRADES = DATA / "eth_usdt_trades_head200.csv"
FAST = {"strategy": {"params": {"fast": 5, "slow": 20, "quantity": 1.0}},
        "risk": {"max_orders_per_s": 1000.0}}


def test_fills_come_from_the_tick_after_each_decision() -> None:
    config = load_config(environ={}, overrides=FAST)
    ticks = load_ticks(JSON, "json", 1)
    run = run_backtest(ticks, config)
    filled = run.reports[run.reports["status"] == OrderStatus.FILLED]
    assert len(filled) > 10
    at = np.searchsorted(run.ticks["source_ts_ns"], filled["venue_ts_ns"])
    assert (at == filled["tick_seq"].astype(np.int64) + 1).all()
    slip = config.executor.slippage_bps / 1e4
    expected = run.ticks["price"][at] * (1 + filled["side"] * slip)
    assert np.allclose(filled["avg_price"], expected)
    # Batching must not change the result (the strategy contract, kept by the engine).
    small = run_backtest(ticks, config, batch_ticks=7)
    assert small.reports.tobytes() == run.reports.tobytes()


def test_report_accounts_for_every_fill() -> None:
    config = load_config(environ={}, overrides=FAST)
    run = run_backtest(load_ticks(JSON, "json", 1), config)
    summary = summarise(run, 100_000.0, "x", config=config)
    equity, position = equity_curve(run, 100_000.0)
    fills = run.reports[run.reports["status"] == OrderStatus.FILLED]
    cash = -(fills["side"] * fills["filled_qty"] * fills["avg_price"]).sum() - fills["fee"].sum()
    final_position = (fills["side"] * fills["filled_qty"]).sum()
    assert position[-1] == final_position
    assert equity[-1] == 100_000.0 + cash + final_position * run.ticks["price"][-1]
    assert summary["fills"] == len(fills)
    assert summary["pnl"] == round(float(equity[-1]) - 100_000.0, 6)
    assert summary["max_drawdown"] >= 0.0
    assert 0.0 <= summary["exposure_pct"] <= 100.0


def test_cli_writes_byte_identical_reports_for_the_same_input(tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        code = main(["backtest", "--data-dir", str(tmp_path / "data"), "--out", str(out),
                     str(JSON), str(TRADES)])
        assert code == 0
        outputs.append(out)
    for suffix in (".report.json", ".report.txt", ".trades.csv", ".equity.png"):
        for stem in (JSON.stem, TRADES.stem):
            first = (outputs[0] / f"{stem}{suffix}").read_bytes()
            assert first == (outputs[1] / f"{stem}{suffix}").read_bytes(), (stem, suffix)
    report = json.loads((outputs[0] / f"{JSON.stem}.report.json").read_text())
    assert {"pnl", "fees", "max_drawdown", "sharpe", "exposure_pct", "fills"} <= set(report)
    timing = json.loads((outputs[0] / f"{JSON.stem}.timing.json").read_text())
    assert timing["candles_per_s"] > 0
    assert "tick_to_decision_us" in timing
    assert (outputs[0] / f"{JSON.stem}.equity.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_file_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[[1, 2]]")
    code = main(["backtest", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                 str(bad), str(JSON)])
    assert code != 0
    assert (tmp_path / "o" / f"{JSON.stem}.report.json").exists()
