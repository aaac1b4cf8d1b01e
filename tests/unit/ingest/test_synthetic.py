"""SyntheticFeed: deterministic per seed, independent of polling, paced like replay."""

from __future__ import annotations

import numpy as np

from pipeline.ingest.synthetic import CHUNK_TICKS, SyntheticFeed
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

START_NS = 1_000
S = 1_000_000_000
UNIX_NS = 1_750_000_000 * S


def _feed(seed: int = 7, rate_hz: float | None = None) -> SyntheticFeed:
    return SyntheticFeed(seed, 150.0, 2.0, rate_hz, 3, start_ns=START_NS,
                         source_start_unix_ns=UNIX_NS)


def _drain(feed: SyntheticFeed, n: int, batch: int) -> np.ndarray:
    pieces = [feed.poll(START_NS, batch) for _ in range(-(-n // batch))]
    return np.concatenate(pieces)[:n]


def test_same_seed_same_ticks_whatever_the_batch_size() -> None:
    n = 3 * CHUNK_TICKS + 5  # crosses chunk boundaries
    reference = _drain(_feed(), n, n)
    for batch in (1, 256, 1001, CHUNK_TICKS + 3):
        np.testing.assert_array_equal(_drain(_feed(), n, batch), reference)


def test_different_seed_different_walk() -> None:
    a = _feed(seed=1).poll(START_NS, 100)
    b = _feed(seed=2).poll(START_NS, 100)
    assert not np.array_equal(a["price"], b["price"])


def test_fields_and_walk_statistics() -> None:
    ticks = _feed().poll(START_NS, 50_000)
    assert ticks.dtype == TICK_DTYPE
    assert len(ticks) == 50_000
    assert set(ticks["symbol_id"]) == {3}
    assert set(ticks["source_id"]) == {SourceId.SYNTHETIC}
    assert set(ticks["flags"]) == {TickFlag.SYNTHETIC}
    assert not ticks["seq"].any()
    assert np.all(ticks["price"] > 0)
    assert np.all(ticks["size"] > 0)
    assert np.all(np.diff(ticks["source_ts_ns"]) > 0)
    assert ticks["source_ts_ns"][0] == UNIX_NS
    log_returns = np.diff(np.log(ticks["price"]))
    assert abs(log_returns.std() / 2e-4 - 1.0) < 0.05  # 2 bps per tick


def test_rate_pacing_and_never_exhausted() -> None:
    feed = _feed(rate_hz=300.0)
    assert len(feed.poll(START_NS + S, 10_000)) == 300
    assert feed.next_due_ns() == START_NS + S + S // 300 + 1  # ceil(301 / 300 s)
    assert not feed.exhausted
    ticks = feed.poll(START_NS + 2 * S, 10_000)
    assert len(ticks) == 300
    assert np.all(np.diff(ticks["source_ts_ns"]) == round(S / 300))
