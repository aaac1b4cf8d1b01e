"""Round trips: FIFO lots, partial closes, long-to-short flips, and the accounting identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.metrics import trade_stats
from pipeline.backtest.report import equity_curve
from pipeline.backtest.trades import CSV_HEADER, round_trips, write_trades_csv
from pipeline.config import load_config
from pipeline.ingest.candles import candles_to_ticks, load_bundled
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason, SourceId, TickFlag

S = 1_000_000_000


def _reports(rows: list[tuple[int, int, float, float, float, OrderStatus]]) -> np.ndarray:
    """REPORT_DTYPE records from (time_s, side, quantity, price, fee, status)."""
    out = np.zeros(len(rows), dtype=REPORT_DTYPE)
    for record, (time_s, side, quantity, price, fee, status) in zip(out, rows, strict=True):
        record["venue_ts_ns"] = time_s * S
        record["side"] = side
        record["status"] = status
        record["quantity"] = quantity
        if status == OrderStatus.FILLED:
            record["filled_qty"], record["avg_price"], record["fee"] = quantity, price, fee
        else:
            record["reject_reason"] = RejectReason.LIMIT_NOT_MARKETABLE
    return out


# Buy 2 @ 100; sell 1 @ 110 (half the lot); sell 3 @ 90 (the other half, then short 2);
# buy 1 @ 80 (half the short). A rejected order in between is no fill.
HAND_MADE = _reports([
    (10, 1, 2.0, 100.0, 0.20, OrderStatus.FILLED),
    (20, -1, 1.0, 110.0, 0.11, OrderStatus.FILLED),
    (25, 1, 5.0, 95.0, 0.0, OrderStatus.REJECTED),
    (30, -1, 3.0, 90.0, 0.27, OrderStatus.FILLED),
    (40, 1, 1.0, 80.0, 0.08, OrderStatus.FILLED),
])


def test_fifo_lots_split_on_partial_closes_and_flip_to_short() -> None:
    book = round_trips(HAND_MADE)
    trades = book.trades
    assert trades["side"].tolist() == [1, 1, -1]
    assert trades["entry_ns"].tolist() == [10 * S, 10 * S, 30 * S]
    assert trades["exit_ns"].tolist() == [20 * S, 30 * S, 40 * S]
    assert trades["quantity"].tolist() == [1.0, 1.0, 1.0]
    # Entry fees pro rata to quantity (0.1 of the 0.2), exit fees likewise (0.09 of 0.27).
    assert trades["fees"] == pytest.approx([0.21, 0.19, 0.17])
    assert trades["pnl"] == pytest.approx([9.79, -10.19, 9.83])
    assert trades["return_pct"] == pytest.approx([9.79, -10.19, 9.83 / 90.0 * 100.0])
    assert book.open_quantity == -1.0
    assert book.open_average_price == pytest.approx(90.0)
    assert book.open_mark_to_market(85.0) == pytest.approx(5.0 - 0.09)
    # The identity: round trips + open position == cash + position marked at 85.
    fills = HAND_MADE[HAND_MADE["status"] == OrderStatus.FILLED]
    signed = fills["side"] * fills["filled_qty"]
    pnl = -(signed * fills["avg_price"]).sum() - fills["fee"].sum() + signed.sum() * 85.0
    assert trades["pnl"].sum() + book.open_mark_to_market(85.0) == pytest.approx(pnl, rel=1e-12)


def test_win_rate_profit_factor_and_expectancy_of_known_trades() -> None:
    trades = round_trips(HAND_MADE).trades
    stats = trade_stats(trades["pnl"], trades["return_pct"],
                        (trades["exit_ns"] - trades["entry_ns"]) / S)
    assert (stats.count, stats.wins, stats.losses) == (3, 2, 1)
    assert stats.win_rate_pct == pytest.approx(200.0 / 3.0)
    assert stats.profit_factor == pytest.approx((9.79 + 9.83) / 10.19)
    assert stats.expectancy == pytest.approx((9.79 - 10.19 + 9.83) / 3.0)
    assert stats.best == pytest.approx(9.83)
    assert stats.worst == pytest.approx(-10.19)
    assert stats.average_holding_s == pytest.approx((10 + 20 + 10) / 3.0)
    assert trade_stats(np.empty(0), np.empty(0), np.empty(0)).win_rate_pct is None


@pytest.mark.parametrize("allow_short", [False, True])
def test_round_trips_plus_open_position_equal_the_equity_curve_pnl(allow_short: bool) -> None:
    """On the bundled candles; shorting makes fills that close a long and open a short."""
    config = load_config(environ={}, overrides={
        "strategy": {"params": {"fast": 8, "slow": 40, "quantity": 1.0,
                                "allow_short": allow_short}},
        "risk": {"max_orders_per_s": 1000.0, "allow_short": allow_short,
                 "max_position": 10.0}})
    ticks = candles_to_ticks(load_bundled(), 1, SourceId.REPLAY, TickFlag.REPLAY)
    run = run_backtest(ticks, config)
    book = round_trips(run.reports)
    equity, _position = equity_curve(run, 100_000.0)
    assert len(book.trades) > 20
    if allow_short:
        assert (book.trades["side"] == -1).any()
    total = book.trades["pnl"].sum() + book.open_mark_to_market(float(run.ticks["price"][-1]))
    assert total == pytest.approx(float(equity[-1]) - 100_000.0, rel=1e-9)


def test_trades_csv_has_one_line_per_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.trades.csv"
    write_trades_csv(path, round_trips(HAND_MADE).trades)
    lines = path.read_text().splitlines()
    assert lines[0] == CSV_HEADER
    assert lines[1] == ("1970-01-01T00:00:10Z,1970-01-01T00:00:20Z,long,1.0,100.0,110.0,0.21,"
                        "9.79,9.79,10s,10.0")
    assert lines[3].split(",")[2] == "short"
    assert len(lines) == 4
