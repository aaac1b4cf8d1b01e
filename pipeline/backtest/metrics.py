"""Performance numbers of an equity curve and of round trips, vectorised over ticks.

Pure functions of arrays (no clock, no config), so each can be checked on a curve built by
hand. Ratios are annualised over 365 days (crypto trades every day); returns are sampled at
the end of each ``period_s`` of source time, so a minute-bar curve and a tick curve of the
same hours give the same Sharpe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

SECONDS_PER_YEAR: Final = 365 * 24 * 3600
_NS_PER_S: Final = 1_000_000_000


@dataclass(frozen=True)
class Drawdown:
    """The largest fall of equity from a previous peak (quote units) and its episode.

    The episode runs from the peak to the first time equity is back at that peak
    (``end_index`` None: not recovered by the last tick, and the duration runs to it).
    ``max_pct`` is the largest fall relative to its peak, which is usually, but not
    necessarily, the same episode.
    """

    max_abs: float
    max_pct: float
    peak_index: int
    trough_index: int
    end_index: int | None
    duration_s: float
    longest_s: float  # the longest time spent below a previous peak, any episode


@dataclass(frozen=True)
class TradeStats:
    """Summary of round-trip PnLs (quote units, net of fees) and holding times."""

    count: int
    wins: int
    losses: int
    win_rate_pct: float | None
    profit_factor: float | None  # gross profit / gross loss; None without losses
    expectancy: float | None  # mean PnL per round trip
    average_return_pct: float | None
    best_pct: float | None
    worst_pct: float | None
    best: float | None
    worst: float | None
    average_holding_s: float | None


def drawdown(times_ns: np.ndarray, equity: np.ndarray) -> Drawdown:
    """The max drawdown of ``equity`` sampled at ``times_ns`` (same length, sorted)."""
    if len(equity) == 0:
        return Drawdown(0.0, 0.0, 0, 0, None, 0.0, 0.0)
    peak = np.maximum.accumulate(equity)
    fall = peak - equity
    trough = int(np.argmax(fall))
    if fall[trough] <= 0.0:
        return Drawdown(0.0, 0.0, 0, 0, None, 0.0, 0.0)
    top = peak[trough]
    start = int(np.flatnonzero(equity[: trough + 1] == top)[-1])
    back = np.flatnonzero(equity[trough:] >= top)
    end = trough + int(back[0]) if len(back) else None
    until = times_ns[end if end is not None else -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(peak > 0.0, fall / peak * 100.0, 0.0)
    return Drawdown(max_abs=float(fall[trough]), max_pct=float(pct.max()), peak_index=start,
                    trough_index=trough, end_index=end,
                    duration_s=float(until - times_ns[start]) / _NS_PER_S,
                    longest_s=_longest_underwater_s(times_ns, fall > 0.0))


def _longest_underwater_s(times_ns: np.ndarray, under: np.ndarray) -> float:
    """Longest stretch from a peak (the tick before going under) to the recovery tick."""
    edges = np.diff(under.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)  # first tick under water; its peak is the one before
    ends = np.flatnonzero(edges == -1)  # first tick back at the peak (or len: never)
    last = len(times_ns) - 1
    spans = times_ns[np.minimum(ends, last)] - times_ns[np.maximum(starts - 1, 0)]
    return float(spans.max()) / _NS_PER_S if len(spans) else 0.0


def period_returns(times_ns: np.ndarray, equity: np.ndarray, period_s: float) -> np.ndarray:
    """Simple returns of the equity sampled at the last tick of each ``period_s`` bucket."""
    if len(times_ns) < 2:
        return np.empty(0)
    bucket = (times_ns - times_ns[0]) // int(period_s * _NS_PER_S)
    ends = np.flatnonzero(np.diff(bucket))
    sampled = np.concatenate((equity[:1], equity[ends], equity[-1:]))
    returns: np.ndarray = np.diff(sampled) / sampled[:-1]
    return returns


def sharpe(returns: np.ndarray, period_s: float) -> float | None:
    """Annualised mean over standard deviation of period returns (risk-free rate 0)."""
    if len(returns) < 2:
        return None
    spread = float(np.std(returns, ddof=1))
    if not spread > 0.0:
        return None
    return float(np.mean(returns)) / spread * math.sqrt(SECONDS_PER_YEAR / period_s)


def sortino(returns: np.ndarray, period_s: float) -> float | None:
    """Like :func:`sharpe`, over the downside deviation (root mean square of losses)."""
    if len(returns) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if not downside > 0.0:
        return None
    return float(np.mean(returns)) / downside * math.sqrt(SECONDS_PER_YEAR / period_s)


def cagr_pct(initial: float, final: float, span_s: float) -> float | None:
    """Compound annual growth rate; None when undefined or beyond a float (tiny spans)."""
    if initial <= 0.0 or final <= 0.0 or span_s <= 0.0:
        return None
    try:
        value = math.expm1(math.log(final / initial) * SECONDS_PER_YEAR / span_s) * 100.0
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def calmar(cagr: float | None, max_drawdown_pct: float) -> float | None:
    """CAGR over the max drawdown, both in percent; None without a drawdown."""
    if cagr is None or not max_drawdown_pct > 0.0:
        return None
    return cagr / max_drawdown_pct


def exposure_pct(times_ns: np.ndarray, position: np.ndarray) -> float:
    """Share of the period with a non-zero position (each tick holds until the next)."""
    if len(times_ns) < 2 or times_ns[-1] == times_ns[0]:
        return 0.0
    held = np.diff(times_ns)[position[:-1] != 0.0].sum()
    return float(held) / float(times_ns[-1] - times_ns[0]) * 100.0


def gap_starts(times_ns: np.ndarray, threshold_s: float | None) -> np.ndarray:
    """Indices ``i`` where ``times_ns[i + 1] - times_ns[i]`` exceeds the threshold.

    Without a threshold, twice the median spacing (the data's own rhythm) is used.
    """
    if len(times_ns) < 2:
        return np.empty(0, dtype=np.int64)
    spacing = np.diff(times_ns)
    limit_ns = (threshold_s * _NS_PER_S if threshold_s is not None
                else 2.0 * float(np.median(spacing)))
    return np.flatnonzero(spacing > limit_ns)


def trade_stats(pnl: np.ndarray, return_pct: np.ndarray, holding_s: np.ndarray) -> TradeStats:
    """Win rate, profit factor, expectancy, best/worst/average of round trips."""
    count = len(pnl)
    if count == 0:
        return TradeStats(0, 0, 0, None, None, None, None, None, None, None, None, None)
    wins, losses = pnl[pnl > 0.0], pnl[pnl < 0.0]
    gross_loss = -float(losses.sum())
    return TradeStats(
        count=count, wins=len(wins), losses=len(losses),
        win_rate_pct=len(wins) / count * 100.0,
        profit_factor=float(wins.sum()) / gross_loss if gross_loss > 0.0 else None,
        expectancy=float(pnl.mean()), average_return_pct=float(return_pct.mean()),
        best_pct=float(return_pct.max()), worst_pct=float(return_pct.min()),
        best=float(pnl.max()), worst=float(pnl.min()),
        average_holding_s=float(holding_s.mean()))
