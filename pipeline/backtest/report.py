"""The backtest report: one JSON-ready dict for machines and a summary table for people.

Everything here is a pure function of the run's ticks and reports and of the config (no
clock), with floats rounded to 6 decimals, so the JSON and the table are byte-identical for
the same input. Equity is marked at every tick; "fills" are venue fills, "round trips"
are FIFO-matched entries and exits (:mod:`pipeline.backtest.trades`).
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import numpy as np

from pipeline.backtest import metrics
from pipeline.backtest.engine import BacktestRun
from pipeline.backtest.timefmt import human_duration, iso_utc
from pipeline.backtest.trades import Book, round_trips
from pipeline.config import PipelineConfig
from pipeline.ingest.validate import REJECT_REASONS
from pipeline.records import OrderStatus, RejectReason, TickFlag
from pipeline.strategy.loader import load_strategy

_NS_PER_S: Final = 1_000_000_000
_SUSPECT: Final = int(TickFlag.SUSPECT)


def equity_curve(run: BacktestRun, initial_quote: float) -> tuple[np.ndarray, np.ndarray]:
    """(equity in quote units per tick, position in base units per tick)."""
    ticks = run.ticks
    fills = run.reports[run.reports["status"] == OrderStatus.FILLED]
    at = np.searchsorted(ticks["source_ts_ns"], fills["venue_ts_ns"], side="left")
    signed = fills["side"].astype(np.float64) * fills["filled_qty"]
    cash_change = np.zeros(len(ticks))
    position_change = np.zeros(len(ticks))
    np.add.at(cash_change, at, -signed * fills["avg_price"] - fills["fee"])
    np.add.at(position_change, at, signed)
    position = np.cumsum(position_change)
    equity = initial_quote + np.cumsum(cash_change) + position * ticks["price"]
    return equity, position


def resolved_parameters(config: PipelineConfig) -> dict[str, Any]:
    """Every constructor parameter of the configured strategy: the config's, else defaults."""
    cls = type(load_strategy(config.strategy))  # the class exactly as the engine builds it
    given = {"symbol_id": config.strategy.symbol_id, **config.strategy.params}
    out: dict[str, Any] = {}
    for name, parameter in inspect.signature(cls).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = given.get(name, parameter.default)
        out[name] = value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
    return out


def summarise(run: BacktestRun, initial_quote: float, source: str, *,
              config: PipelineConfig | None = None, candles: int | None = None,
              quote: str = "USDT", period_s: float = 3600.0,
              curve: tuple[np.ndarray, np.ndarray] | None = None,
              book: Book | None = None) -> dict[str, Any]:
    """The deterministic report as a JSON-ready dict (keys in reading order).

    ``config`` is the one the run used: without it the strategy, its parameters, fee and
    slippage are null and gaps are judged against twice the median tick spacing.
    ``curve`` (:func:`equity_curve`) and ``book`` (:func:`round_trips`) may be passed in
    when the caller has them already: on a year of ticks each costs a tenth of a second.
    """
    times_ns = run.ticks["source_ts_ns"]
    prices = run.ticks["price"]
    equity, position = curve if curve is not None else equity_curve(run, initial_quote)
    final = float(equity[-1]) if len(equity) else initial_quote
    span_s = float(times_ns[-1] - times_ns[0]) / _NS_PER_S if len(times_ns) else 0.0
    book = book if book is not None else round_trips(run.reports)
    trades = book.trades
    stats = metrics.trade_stats(trades["pnl"], trades["return_pct"],
                                (trades["exit_ns"] - trades["entry_ns"]) / _NS_PER_S)
    down = metrics.drawdown(times_ns, equity)
    returns = metrics.period_returns(times_ns, equity, period_s)
    cagr = metrics.cagr_pct(initial_quote, final, span_s)
    hold_pct = float(prices[-1] / prices[0] - 1.0) * 100.0 if len(prices) else 0.0
    filled = run.reports[run.reports["status"] == OrderStatus.FILLED]
    last_price = float(prices[-1]) if len(prices) else 0.0

    def at(index: int | None) -> str | None:
        return iso_utc(int(times_ns[index])) if index is not None and len(times_ns) else None

    return {
        "source": source,
        "strategy": config.strategy.name if config else None,
        "parameters": resolved_parameters(config) if config else None,
        "fee_bps": config.executor.fee_bps if config else None,
        "slippage_bps": config.executor.slippage_bps if config else None,
        "quote": quote,
        "initial_quote": initial_quote,
        "from": at(0), "to": at(len(times_ns) - 1),
        "period_s": _round(span_s),
        "candles": candles,
        "ticks": len(run.ticks) + sum(run.ticks_rejected.values()),
        "ticks_accepted": len(run.ticks),
        "final_equity": _round(final),
        "pnl": _round(final - initial_quote),
        "return_pct": _pct(final, initial_quote),
        "cagr_pct": _opt(cagr),
        "buy_and_hold_return_pct": _round(hold_pct),
        "buy_and_hold_pnl": _round(initial_quote * hold_pct / 100.0),
        "max_drawdown": _round(down.max_abs),
        "max_drawdown_pct": _round(down.max_pct),
        "max_drawdown_from": at(down.peak_index) if down.max_abs else None,
        "max_drawdown_trough": at(down.trough_index) if down.max_abs else None,
        "max_drawdown_recovered": at(down.end_index),
        "max_drawdown_duration_s": _round(down.duration_s),
        "longest_drawdown_s": _round(down.longest_s),
        "sharpe": _opt(metrics.sharpe(returns, period_s)),
        "sortino": _opt(metrics.sortino(returns, period_s)),
        "calmar": _opt(metrics.calmar(cagr, down.max_pct)),
        "ratio_period_s": period_s,
        "exposure_pct": _round(metrics.exposure_pct(times_ns, position)),
        "round_trips": stats.count,
        "wins": stats.wins,
        "losses": stats.losses,
        "win_rate_pct": _opt(stats.win_rate_pct),
        "profit_factor": _opt(stats.profit_factor),
        "expectancy": _opt(stats.expectancy),
        "average_trade_pct": _opt(stats.average_return_pct),
        "best_trade_pct": _opt(stats.best_pct),
        "worst_trade_pct": _opt(stats.worst_pct),
        "best_trade": _opt(stats.best),
        "worst_trade": _opt(stats.worst),
        "average_holding_s": _opt(stats.average_holding_s),
        "fills": len(filled),
        "buys": int(np.count_nonzero(filled["side"] > 0)),
        "sells": int(np.count_nonzero(filled["side"] < 0)),
        "traded_notional": _round(float((filled["filled_qty"] * filled["avg_price"]).sum())),
        "fees": _round(float(filled["fee"].sum())),
        "open_position": _open_position(book, last_price),
        "orders_not_filled": _not_filled(run.reports),
        "risk_rejects": dict(sorted(run.risk_rejects.items())),
        "validation": _validation(run, config),
    }


def _open_position(book: Book, last_price: float) -> dict[str, Any]:
    average = book.open_average_price
    return {"quantity": _round(book.open_quantity),
            "average_price": None if average is None else _round(average),
            "mark_to_market": _round(book.open_mark_to_market(last_price))}


def _not_filled(reports: np.ndarray) -> dict[str, int]:
    final = reports[(reports["status"] != OrderStatus.FILLED)
                    & (reports["status"] != OrderStatus.NEW)]
    codes, counts = np.unique(final["reject_reason"], return_counts=True)
    return {RejectReason(int(code)).name.lower(): int(count)
            for code, count in zip(codes, counts, strict=True)}


def gap_threshold_s(config: PipelineConfig | None) -> float | None:
    """Validation's gap limit (its SUSPECT rule); None without config or validation."""
    if config is None or not config.ingest.validation.enabled:
        return None
    return config.ingest.validation.max_gap_s


def _validation(run: BacktestRun, config: PipelineConfig | None) -> dict[str, Any]:
    """Ticks rejected (every reason, zeros too), SUSPECT flags and gaps in source time."""
    times_ns = run.ticks["source_ts_ns"]
    threshold_s = gap_threshold_s(config)
    gaps = metrics.gap_starts(times_ns, threshold_s)
    lengths_s = (times_ns[gaps + 1] - times_ns[gaps]) / _NS_PER_S
    longest = int(gaps[np.argmax(lengths_s)]) if len(gaps) else None
    rejected = dict.fromkeys(REJECT_REASONS, 0) | run.ticks_rejected
    return {
        "ticks_rejected": dict(sorted(rejected.items())),
        "suspect_ticks": int(np.count_nonzero(run.ticks["flags"] & _SUSPECT)),
        "gap_threshold_s": threshold_s,
        "gaps": len(gaps),
        "gap_time_s": _round(float(lengths_s.sum())),
        "longest_gap_s": _round(float(lengths_s.max())) if len(gaps) else None,
        "longest_gap_from": iso_utc(int(times_ns[longest])) if longest is not None else None,
    }


def _round(value: float) -> float:
    """Fixed precision, so the text form does not print float noise."""
    return round(value, 6)


def _opt(value: float | None) -> float | None:
    return None if value is None else _round(value)


def _pct(final: float, initial: float) -> float | None:
    return _round((final / initial - 1.0) * 100.0) if initial else None


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a boxed two-column table, in the manner of freqtrade's."""
    s, q = summary, summary["quote"]
    valid = s["validation"]
    sections: list[list[tuple[str, str]]] = [
        [("Source", s["source"]), ("Strategy", _t(s["strategy"])),
         *((f"  {name}", str(value)) for name, value in (s["parameters"] or {}).items()),
         ("Fee / slippage", f"{_t(s['fee_bps'])} bps / {_t(s['slippage_bps'])} bps"),
         ("Backtesting from", _t(s["from"])), ("Backtesting to", _t(s["to"])),
         ("Period", human_duration(s["period_s"])),
         ("Candles / ticks", f"{_t(s['candles'])} / {s['ticks']} "
                             f"({s['ticks_accepted']} accepted)")],
        [("Starting balance", _money(s["initial_quote"], q)),
         ("Final balance", _money(s["final_equity"], q)),
         ("Absolute profit", _money(s["pnl"], q)), ("Total profit %", _p(s["return_pct"])),
         ("CAGR %", _p(s["cagr_pct"])),
         ("Buy and hold", f"{_p(s['buy_and_hold_return_pct'])} "
                          f"({_money(s['buy_and_hold_pnl'], q)})"),
         ("Sharpe / Sortino / Calmar", " / ".join(_n(s[k], 2) for k in
                                                  ("sharpe", "sortino", "calmar"))),
         ("Max drawdown", f"{_money(s['max_drawdown'], q)} ({_p(s['max_drawdown_pct'])})"),
         ("Drawdown from / trough", f"{_t(s['max_drawdown_from'])} / "
                                    f"{_t(s['max_drawdown_trough'])}"),
         ("Drawdown duration", human_duration(s["max_drawdown_duration_s"])
          + ("" if s["max_drawdown_recovered"] or not s["max_drawdown"] else " (not recovered)")),
         ("Longest drawdown", human_duration(s["longest_drawdown_s"])),
         ("Exposure", _p(s["exposure_pct"]))],
        [("Round trips", f"{s['round_trips']} ({s['wins']} wins, {s['losses']} losses)"),
         ("Win rate", _p(s["win_rate_pct"])), ("Profit factor", _n(s["profit_factor"], 2)),
         ("Expectancy", _money(s["expectancy"], q)),
         ("Avg / best / worst trade", " / ".join(_p(s[k]) for k in
                                                 ("average_trade_pct", "best_trade_pct",
                                                  "worst_trade_pct"))),
         ("Best / worst trade", f"{_money(s['best_trade'], q)} / {_money(s['worst_trade'], q)}"),
         ("Avg holding time", _d(s["average_holding_s"])),
         ("Fills", f"{s['fills']} ({s['buys']} buys, {s['sells']} sells)"),
         ("Traded notional", _money(s["traded_notional"], q)), ("Fees", _money(s["fees"], q)),
         ("Open position", f"{s['open_position']['quantity']} "
                           f"(mark-to-market {_money(s['open_position']['mark_to_market'], q)})")],
        [("Orders not filled", _counts(s["orders_not_filled"])),
         ("Risk rejects", _counts(s["risk_rejects"])),
         ("Ticks rejected", _counts(valid["ticks_rejected"])),
         ("Suspect ticks", str(valid["suspect_ticks"])),
         (f"Gaps > {_d(valid['gap_threshold_s']) if valid['gap_threshold_s'] else '2x median'}",
          f"{valid['gaps']}, {human_duration(valid['gap_time_s'])} in all"
          + (f"; longest {_d(valid['longest_gap_s'])} from {_t(valid['longest_gap_from'])}"
             if valid["gaps"] else ""))],
    ]
    rows = [row for section in sections for row in section]
    left = max(len(label) for label, _ in rows)
    right = max(len(value) for _, value in rows)
    rule = f"+-{'-' * left}-+-{'-' * right}-+"
    lines = [rule, f"| {'Metric':<{left}} | {'Value':<{right}} |", rule]
    for section in sections:
        lines += [f"| {label:<{left}} | {value:<{right}} |" for label, value in section]
        lines.append(rule)
    return "\n".join(lines) + "\n"


def _t(value: Any) -> str:
    return "-" if value is None else str(value)


def _n(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _d(seconds: float | None) -> str:
    return "-" if seconds is None else human_duration(seconds)


def _money(value: float | None, quote: str) -> str:
    return "-" if value is None else f"{value:.3f} {quote}"


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{name}={count}" for name, count in counts.items() if count]
    return ", ".join(shown) if shown else "none"
