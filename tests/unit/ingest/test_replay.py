"""ReplayFeed pacing (rate, source time, unpaced) and looping, with an injected clock."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import BadInputError
from pipeline.ingest.candles import candles_to_ticks, load_bundled
from pipeline.ingest.pacing import FixedRate, SourceTime
from pipeline.ingest.replay import ReplayFeed
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

START_NS = 5_000_000_000  # an arbitrary monotonic origin, far from 0
S = 1_000_000_000


def _ticks(n: int, spacing_ns: int = 15 * S) -> np.ndarray:
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    ticks["source_ts_ns"] = 1_700_000_000 * S + np.arange(n) * spacing_ns
    ticks["price"] = 100.0 + np.arange(n)
    ticks["symbol_id"] = 1
    return ticks


def test_rate_300_has_exactly_300_due_after_one_second() -> None:
    feed = ReplayFeed(_ticks(1000), rate_hz=300.0, loop=False, start_ns=START_NS)
    assert len(feed.poll(START_NS, 1000)) == 0
    assert len(feed.poll(START_NS + S - 1, 1000)) == 299
    assert len(feed.poll(START_NS + S, 1000)) == 1
    assert feed.emitted == 300


def test_rate_pacing_does_not_drift_with_irregular_polls() -> None:
    feed = ReplayFeed(_ticks(10), rate_hz=300.0, loop=True, start_ns=START_NS)
    total = 0
    for now_ns in range(START_NS, START_NS + 10 * S, 7_777_777):  # odd poll period
        total += len(feed.poll(now_ns, 10_000))
    total += len(feed.poll(START_NS + 10 * S, 10_000))
    assert total == 3000


def test_max_ticks_caps_a_poll_and_backlog_is_kept() -> None:
    feed = ReplayFeed(_ticks(1000), rate_hz=300.0, loop=False, start_ns=START_NS)
    assert len(feed.poll(START_NS + S, 256)) == 256
    assert len(feed.poll(START_NS + S, 256)) == 44


def test_next_due_is_the_first_instant_a_tick_is_due() -> None:
    feed = ReplayFeed(_ticks(100), rate_hz=300.0, loop=False, start_ns=START_NS)
    for _ in range(20):
        due_ns = feed.next_due_ns()
        assert due_ns is not None
        assert len(feed.poll(due_ns - 1, 1)) == 0
        assert len(feed.poll(due_ns, 1)) == 1


@given(
    rate_hz=st.floats(min_value=0.01, max_value=1e7),
    index=st.integers(min_value=0, max_value=10**9),
    start_ns=st.integers(min_value=0, max_value=10**15),
)
def test_fixed_rate_due_ns_is_exact(rate_hz: float, index: int, start_ns: int) -> None:
    schedule = FixedRate(rate_hz, start_ns)
    due_ns = schedule.due_ns(index)
    assert schedule.due_count(due_ns) > index
    assert schedule.due_count(due_ns - 1) <= index


def test_unpaced_returns_up_to_max_ticks_immediately() -> None:
    feed = ReplayFeed(_ticks(10), rate_hz=0.0, loop=False, start_ns=START_NS)
    assert feed.next_due_ns() == START_NS
    first = feed.poll(START_NS, 4)
    np.testing.assert_array_equal(first["price"], [100.0, 101.0, 102.0, 103.0])
    assert len(feed.poll(START_NS, 100)) == 6
    assert feed.exhausted
    assert feed.next_due_ns() is None
    assert len(feed.poll(START_NS + S, 100)) == 0


def test_rate_none_means_unpaced() -> None:
    feed = ReplayFeed(_ticks(10), rate_hz=None, loop=False, start_ns=START_NS)
    assert len(feed.poll(START_NS, 100)) == 10


def test_speed_follows_source_time() -> None:
    # Ticks 15 s apart at 60x real time: one tick every 250 ms, the first at once.
    feed = ReplayFeed(_ticks(10), rate_hz=300.0, loop=False, start_ns=START_NS, speed=60.0)
    assert len(feed.poll(START_NS, 100)) == 1
    assert feed.next_due_ns() == START_NS + S // 4
    assert len(feed.poll(START_NS + S // 4 - 1, 100)) == 0
    assert len(feed.poll(START_NS + S, 100)) == 4
    assert len(feed.poll(START_NS + 100 * S, 100)) == 5
    assert feed.exhausted


def test_speed_with_loop_continues_at_the_same_spacing() -> None:
    feed = ReplayFeed(_ticks(4), rate_hz=None, loop=True, start_ns=START_NS, speed=15.0)
    # One tick per second; pass 2 starts one mean gap (15 s source) after the last tick.
    assert feed.span_ns == 60 * S
    out = feed.poll(START_NS + 9 * S, 100)
    assert len(out) == 10
    assert np.all(np.diff(out["source_ts_ns"]) == 15 * S)


def test_source_time_due_ns_is_exact() -> None:
    offsets = np.array([0, 10, 10, 35], dtype=np.int64)
    schedule = SourceTime(offsets, span_ns=40, loop=True, speed=3.0, start_ns=START_NS)
    for index in range(20):
        due_ns = schedule.due_ns(index)
        assert schedule.due_count(due_ns) > index
        assert schedule.due_count(due_ns - 1) <= index


def test_loop_keeps_source_timestamps_strictly_increasing() -> None:
    ticks = _ticks(5)
    feed = ReplayFeed(ticks, rate_hz=None, loop=True, start_ns=START_NS)
    out = np.concatenate([feed.poll(START_NS, 3) for _ in range(10)])
    assert len(out) == 30
    assert not feed.exhausted
    assert np.all(np.diff(out["source_ts_ns"]) > 0)
    np.testing.assert_array_equal(out["price"], np.tile(ticks["price"], 6))
    np.testing.assert_array_equal(out["source_ts_ns"][5:10] - out["source_ts_ns"][:5],
                                  np.full(5, feed.span_ns))


def test_loop_over_bundled_data_crosses_the_seam_smoothly() -> None:
    ticks = candles_to_ticks(load_bundled(), 1, SourceId.REPLAY, TickFlag.REPLAY)
    feed = ReplayFeed(ticks, rate_hz=None, loop=True, start_ns=START_NS)
    out = feed.poll(START_NS, 2 * len(ticks) + 10)
    assert np.all(np.diff(out["source_ts_ns"]) == 15 * S)
    assert feed.span_ns == 3 * 24 * 3600 * S


def test_single_tick_loop() -> None:
    feed = ReplayFeed(_ticks(1), rate_hz=None, loop=True, start_ns=START_NS)
    out = feed.poll(START_NS, 5)
    assert np.all(np.diff(out["source_ts_ns"]) > 0)


def test_poll_returns_copies_with_seq_and_ingest_cleared() -> None:
    ticks = _ticks(3)
    ticks["seq"] = 9
    ticks["ingest_ns"] = 9
    feed = ReplayFeed(ticks, rate_hz=None, loop=True, start_ns=START_NS)
    out = feed.poll(START_NS, 3)
    assert not out["seq"].any()
    assert not out["ingest_ns"].any()
    out["price"] = -1.0
    assert feed.poll(START_NS, 3)["price"][0] == 100.0


@pytest.mark.parametrize(
    "ticks",
    [np.zeros(0, dtype=TICK_DTYPE), _ticks(3)[::-1].copy(), np.zeros(3, dtype=np.float64)],
)
def test_rejects_unusable_tick_arrays(ticks: np.ndarray) -> None:
    with pytest.raises(BadInputError):
        ReplayFeed(ticks, rate_hz=None, loop=False, start_ns=START_NS)
