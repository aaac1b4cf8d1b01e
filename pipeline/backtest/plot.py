"""The backtest PNG: price with fills, equity against buy-and-hold, and drawdown.

Three panels share one UTC date axis. Gaps in the data (halts included: validation drops
their ticks) are shaded and every line breaks across them. A year of ticks is millions of
points, more than the image has pixels: each line is cut into ``buckets`` time buckets
and each bucket drawn as its minimum and maximum, which keeps every spike and renders in
a fraction of a second. matplotlib's Agg backend with no Software metadata writes the same
bytes for the same data.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from pipeline.records import OrderStatus

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn: the CLI starts fast
    from matplotlib.figure import Figure

BUCKETS: Final = 2000  # about two per horizontal pixel of the panels
_MARKER_GRID: Final = (400, 200)  # columns, rows of the price panel's marker cells
_MIN_GAP_WIDTH: Final = 0.002  # of the whole period
_NS_PER_DAY: Final = 86_400 * 1_000_000_000


def plot_backtest(path: Path, *, times_ns: np.ndarray, prices: np.ndarray,
                  equity: np.ndarray, reports: np.ndarray, gaps: np.ndarray,
                  initial_quote: float, title: str, quote: str = "USDT") -> None:
    """Write the three-panel PNG; ``gaps`` are indices ``i`` with a gap after tick ``i``."""
    figure = build_figure(times_ns=times_ns, prices=prices, equity=equity, reports=reports,
                          gaps=gaps, initial_quote=initial_quote, title=title, quote=quote)
    figure.savefig(path, format="png", metadata={"Software": None})


def build_figure(*, times_ns: np.ndarray, prices: np.ndarray, equity: np.ndarray,
                 reports: np.ndarray, gaps: np.ndarray, initial_quote: float, title: str,
                 quote: str = "USDT", buckets: int = BUCKETS) -> Figure:
    """The figure of :func:`plot_backtest` (price, equity, drawdown axes, in that order)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    # matplotlib.dates has no type annotations, hence the ignores below.
    epoch_day = float(dates.date2num(np.datetime64(0, "ns")))  # type: ignore[no-untyped-call]

    def days(ns: np.ndarray) -> np.ndarray:
        return np.asarray(ns, dtype=np.float64) / _NS_PER_DAY + epoch_day

    hold = initial_quote * prices / prices[0] if len(prices) else prices
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown_pct = np.where(peak > 0.0, (equity - peak) / peak * 100.0, 0.0)
    x_ns, (price_y, equity_y, hold_y, drawdown_y) = decimate(
        times_ns, (prices, equity, hold, drawdown_pct), gaps, buckets)
    x = days(x_ns)
    fills = reports[reports["status"] == OrderStatus.FILLED]

    figure = Figure(figsize=(12, 8), dpi=100)
    figure.subplots_adjust(left=0.08, right=0.92, top=0.95, bottom=0.06, hspace=0.08)
    price_ax, equity_ax, drawdown_ax = figure.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": (3, 2, 1.2)})
    price_ax.plot(x, price_y, color="0.25", linewidth=0.7, label="price")
    for side, marker, color, name in ((1, "^", "tab:green", "buy"),
                                      (-1, "v", "tab:red", "sell")):
        mine = fills[fills["side"] == side]
        shown = thin_markers(mine["venue_ts_ns"], mine["avg_price"], times_ns, prices)
        price_ax.plot(days(mine["venue_ts_ns"][shown]), mine["avg_price"][shown],
                      linestyle="none", marker=marker, markersize=5, color=color,
                      label=f"{name} ({len(mine)})")
    price_ax.set_ylabel(f"price ({quote})")
    equity_ax.plot(x, hold_y, color="tab:orange", linewidth=0.9, label="buy and hold")
    equity_ax.set_ylabel(f"equity ({quote})")
    strategy_ax = equity_ax
    if _flat_beside(equity_y, hold_y):
        # Small positions against the whole capital in buy-and-hold: on one scale the
        # strategy would be a flat line, so it gets its own scale on the right.
        strategy_ax = equity_ax.twinx()
        strategy_ax.set_ylabel(f"strategy equity ({quote}, right)", color="tab:blue")
        strategy_ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    strategy_ax.plot(x, equity_y, color="tab:blue", linewidth=0.9,
                     label="strategy" + (" (right scale)" if strategy_ax is not equity_ax else ""))
    drawdown_ax.fill_between(x, drawdown_y, 0.0, color="tab:red", alpha=0.4, linewidth=0)
    drawdown_ax.set_ylabel("drawdown (%)")
    span = np.column_stack((days(times_ns[gaps]), days(times_ns[gaps + 1])))
    if len(span) and len(x):  # at least ~2 pixels wide: an hour's halt in a year shows
        span[:, 1] = np.maximum(span[:, 1], span[:, 0] + (x[-1] - x[0]) * _MIN_GAP_WIDTH)
    for axes in (price_ax, equity_ax, drawdown_ax):
        if len(span):
            boxes = [((a, 0.0), (a, 1.0), (b, 1.0), (b, 0.0)) for a, b in span.tolist()]
            axes.add_collection(PolyCollection(boxes, transform=axes.get_xaxis_transform(),
                                               facecolor="0.6", alpha=0.3, linewidth=0))
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)
        axes.grid(True, alpha=0.3)
    handles, labels = price_ax.get_legend_handles_labels()
    if len(span):
        handles.append(Patch(facecolor="0.6", alpha=0.3, label=f"gap / halt ({len(span)})"))
        labels.append(handles[-1].get_label())
    price_ax.legend(handles, labels, loc="upper left", fontsize=8)
    lines = equity_ax.get_lines() + (strategy_ax.get_lines() if strategy_ax is not equity_ax
                                     else [])
    # On the axes drawn last (the twin, if any), so no line is drawn over it.
    strategy_ax.legend(lines, [line.get_label() for line in lines], loc="upper left",
                       fontsize=8)
    locator = dates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    drawdown_ax.xaxis.set_major_locator(locator)
    drawdown_ax.xaxis.set_major_formatter(
        dates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    drawdown_ax.set_xlabel("UTC")
    if len(x):
        drawdown_ax.set_xlim(x[0], x[-1])
    price_ax.set_title(title, fontsize=10)
    return figure


def _flat_beside(strategy: np.ndarray, hold: np.ndarray) -> bool:
    """True when the strategy's range is under a twentieth of buy-and-hold's."""
    ranges = [float(np.nanmax(y) - np.nanmin(y)) if np.isfinite(y).any() else 0.0
              for y in (strategy, hold)]
    return ranges[0] < ranges[1] / 20.0


def decimate(times_ns: np.ndarray, series: tuple[np.ndarray, ...], gaps: np.ndarray,
             buckets: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(times, series) to draw: at most about ``2 * buckets`` points, NaN across gaps.

    Short inputs are kept whole. Longer ones are cut at time-bucket edges and at gaps; each
    piece becomes two points at its first time, its minimum and its maximum.
    """
    n = len(times_ns)
    if n <= 2 * buckets:
        cut = gaps + 1
        at = np.asarray(times_ns, dtype=np.int64)
        return (np.insert(at, cut, at[gaps]),
                tuple(np.insert(np.asarray(s, dtype=np.float64), cut, np.nan) for s in series))
    width_ns = max(1, -(-int(times_ns[-1] - times_ns[0]) // buckets))
    bucket = (times_ns - times_ns[0]) // width_ns
    starts = np.union1d(np.flatnonzero(np.diff(bucket)) + 1, gaps + 1)
    starts = np.concatenate(([0], starts[starts < n])).astype(np.int64)
    after_gap = np.isin(starts, gaps + 1)
    x = np.repeat(times_ns[starts], 2)
    out = []
    for values in series:
        pairs = np.column_stack((np.minimum.reduceat(values, starts),
                                 np.maximum.reduceat(values, starts))).ravel()
        out.append(np.insert(pairs, np.flatnonzero(after_gap) * 2, np.nan))
    return np.insert(x, np.flatnonzero(after_gap) * 2, x[np.flatnonzero(after_gap) * 2]), \
        tuple(out)


def thin_markers(at_ns: np.ndarray, price: np.ndarray, times_ns: np.ndarray,
                 prices: np.ndarray) -> np.ndarray:
    """Indices of the markers to draw: the first in each cell of a fine grid over the panel.

    Thousands of fills a year would draw the same pixels many times over, slowly; a cell
    (about 3 x 1.5 pixels) is smaller than a marker, so one marker per cell looks the same.
    """
    columns, rows = _MARKER_GRID
    if len(at_ns) <= columns or len(times_ns) == 0:
        return np.arange(len(at_ns))
    span_ns = max(1, int(times_ns[-1] - times_ns[0]))
    low, high = float(prices.min()), float(prices.max())
    column = (at_ns - times_ns[0]) * columns // span_ns
    row = np.floor((price - low) / max(high - low, 1e-12) * rows).astype(np.int64)
    _cells, first = np.unique(column * (rows + 1) + row, return_index=True)
    return np.sort(first)
