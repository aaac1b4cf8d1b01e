"""The equity-curve PNG of a backtest (matplotlib, headless Agg backend, reproducible bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_equity(path: Path, times_ns: np.ndarray, equity: np.ndarray, title: str) -> None:
    """Write equity over time to ``path``; no timestamp metadata, so reruns match byte for byte."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    hours = (times_ns - times_ns[0]) / 3.6e12 if len(times_ns) else times_ns
    step = max(1, len(equity) // 20_000)  # enough points for a 1200-pixel-wide line
    figure = Figure(figsize=(10, 4), dpi=120)
    axes = figure.add_subplot()
    axes.plot(hours[::step], equity[::step], linewidth=0.8)
    axes.set_xlabel("hours since first tick")
    axes.set_ylabel("equity (quote units)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})
