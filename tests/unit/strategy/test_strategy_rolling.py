"""Streaming EMA and rolling moments: correct, and identical however the stream is cut."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.strategy.rolling import Ema, RollingMoments, block_cumsum

Walk = Callable[[int, int], np.ndarray]


def _sequential_ema(values: np.ndarray, span: int) -> np.ndarray:
    alpha = 2.0 / (span + 1)
    out = np.empty_like(values)
    ema = values[0]
    for i, value in enumerate(values):
        ema = (1.0 - alpha) * ema + alpha * value
        out[i] = ema
    return out


def _in_batches(
    values: np.ndarray, cuts: list[int], update: Callable[[np.ndarray], object]
) -> list[object]:
    edges = [0, *sorted({c % (values.size + 1) for c in cuts}), values.size]
    return [update(values[a:b]) for a, b in itertools.pairwise(edges)]


def test_block_cumsum_resumes_a_block() -> None:
    sums = block_cumsum(np.array([1.0, 2.0, 3.0, 4.0]), offset=2, carry=10.0, block=3)
    assert sums.ravel()[2:6].tolist() == [11.0, 2.0, 5.0, 9.0]


@pytest.mark.parametrize("span", [1, 2, 3, 20, 100, 5000])
def test_ema_matches_the_recursion(span: int, random_walk: Walk) -> None:
    prices = random_walk(3000, 1)
    assert Ema(span).update(prices) == pytest.approx(_sequential_ema(prices, span), rel=1e-13)


def test_ema_rejects_a_zero_span() -> None:
    with pytest.raises(ValueError, match="span"):
        Ema(0)


@settings(max_examples=60, deadline=None)
@given(
    span=st.integers(1, 400),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 10**6), max_size=30),
)
def test_ema_is_bitwise_identical_across_batchings(
    span: int, seed: int, cuts: list[int], random_walk: Walk
) -> None:
    prices = random_walk(1500, seed)
    whole = Ema(span).update(prices)
    ema = Ema(span)
    pieces = _in_batches(prices, cuts, ema.update)
    assert np.array_equal(np.concatenate(pieces), whole)  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [2, 5, 60, 300])
def test_moments_match_a_sliding_window(window: int, random_walk: Walk) -> None:
    prices = random_walk(3000, 2)
    mean, std = RollingMoments(window).update(prices)
    windows = sliding_window_view(prices, window)
    assert np.isnan(mean[: window - 1]).all()
    assert np.isnan(std[: window - 1]).all()
    assert mean[window - 1 :] == pytest.approx(windows.mean(axis=1), rel=1e-14)
    assert std[window - 1 :] == pytest.approx(windows.std(axis=1), rel=1e-6, abs=1e-9)


def test_moments_stay_precise_after_the_price_drifts() -> None:
    """Centring per block: a far-away first price must not swamp a small variance."""
    prices = np.concatenate((np.full(1000, 10.0), 250.0 + 1e-4 * np.sin(np.arange(2000))))
    _, std = RollingMoments(50).update(prices)
    expected = sliding_window_view(prices, 50).std(axis=1)
    assert std[-1000:] == pytest.approx(expected[-1000:], rel=1e-6)


def test_flat_prices_have_zero_std() -> None:
    mean, std = RollingMoments(5).update(np.full(600, 150.3))
    assert (std[4:] == 0.0).all()
    assert (mean[4:] == 150.3).all()


@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(2, 400),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 10**6), max_size=30),
)
def test_moments_are_bitwise_identical_across_batchings(
    window: int, seed: int, cuts: list[int], random_walk: Walk
) -> None:
    prices = random_walk(1500, seed)
    whole_mean, whole_std = RollingMoments(window).update(prices)
    moments = RollingMoments(window)
    pieces = _in_batches(prices, cuts, moments.update)
    mean = np.concatenate([p[0] for p in pieces])  # type: ignore[index]
    std = np.concatenate([p[1] for p in pieces])  # type: ignore[index]
    assert np.array_equal(mean, whole_mean, equal_nan=True)
    assert np.array_equal(std, whole_std, equal_nan=True)


def test_flat_windows_off_the_block_centre_have_zero_std() -> None:
    """After a step the block's centre is the old price: rounding must not read as spread."""
    prices = np.concatenate((np.full(30, 150.0), np.full(300, 151.37)))
    _, std = RollingMoments(10).update(prices)
    assert (std[39:] == 0.0).all()
    assert (std[30:39] > 0.0).all()
