"""CommitPacer keeps commits/s and estimated WAL bytes/s within budget; the estimate is sane."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.ledger.pacing import WAL_FRAME_HEADER_BYTES, CommitPacer, estimate_wal_bytes
from pipeline.ledger.store import LedgerStore


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_first_commit_is_immediate() -> None:
    pacer = CommitPacer(500, 50e6)
    assert pacer.delay_s(0.0) == 0.0


def test_commit_budget_spaces_commits() -> None:
    pacer = CommitPacer(commits_per_s=100, wal_bytes_per_s=1e12)
    pacer.record(10.0, wal_bytes=0)
    assert pacer.delay_s(10.0) == pytest.approx(0.01)
    assert pacer.delay_s(10.004) == pytest.approx(0.006)
    assert pacer.delay_s(10.01) == 0.0


def test_commit_rate_never_exceeds_budget() -> None:
    clock = FakeClock()
    pacer = CommitPacer(commits_per_s=250, wal_bytes_per_s=1e12, clock=clock)
    commits = 0
    start_s = clock.now_s
    while clock.now_s - start_s < 10.0:
        delay = pacer.delay_s()
        if delay > 0:
            clock.now_s += delay
            continue
        pacer.record(wal_bytes=1000)
        commits += 1
        clock.now_s += 0.0001  # the commit itself
    assert commits <= 250 * 10 + 1


def test_wal_cap_limits_bytes_per_second() -> None:
    clock = FakeClock()
    pacer = CommitPacer(commits_per_s=1e6, wal_bytes_per_s=1e6, clock=clock)
    written = 0
    start_s = clock.now_s
    while clock.now_s - start_s < 5.0:
        delay = pacer.delay_s()
        if delay > 0:
            clock.now_s += delay
            continue
        pacer.record(wal_bytes=300_000)
        written += 300_000
    elapsed_s = clock.now_s - start_s
    assert written / elapsed_s <= 1e6 * 1.07  # the first commit is not paced


def test_idle_time_is_not_banked() -> None:
    pacer = CommitPacer(commits_per_s=1000, wal_bytes_per_s=1000)
    pacer.record(0.0, wal_bytes=500)
    assert pacer.delay_s(100.0) == 0.0
    pacer.record(100.0, wal_bytes=2000)  # a long idle period earns no burst credit
    assert pacer.delay_s(100.0) == pytest.approx(2.0)


def test_uses_injected_clock_when_now_omitted() -> None:
    clock = FakeClock()
    pacer = CommitPacer(10, 1e9, clock=clock)
    pacer.record()
    assert pacer.delay_s() == pytest.approx(0.1)
    clock.now_s += 0.05
    assert pacer.delay_s() == pytest.approx(0.05)


@pytest.mark.parametrize(("commits", "wal"), [(0, 1), (-1, 1), (1, 0), (math.nan, 1)])
def test_refuses_bad_budgets(commits: float, wal: float) -> None:
    with pytest.raises(ValueError, match="must be a positive number"):
        CommitPacer(commits, wal)


def test_estimate_grows_with_rows_in_whole_frames() -> None:
    assert estimate_wal_bytes(0) == 0
    small = estimate_wal_bytes(1)
    big = estimate_wal_bytes(10_000)
    assert 0 < small < big
    assert small % (4096 + WAL_FRAME_HEADER_BYTES) == 0
    assert estimate_wal_bytes(100, page_size=8192) % (8192 + WAL_FRAME_HEADER_BYTES) == 0
    with pytest.raises(ValueError, match="rows_written"):
        estimate_wal_bytes(-1)


@pytest.mark.parametrize("orders", [1, 3000])
def test_estimate_covers_a_real_commit(
    store: LedgerStore, db_path: Path, make_reports: Callable[..., np.ndarray], orders: int
) -> None:
    """The cap is only honest if the estimate is not below what SQLite really appends."""
    wal = db_path.with_name(db_path.name + "-wal")
    before = wal.stat().st_size
    ids = np.random.default_rng(orders).integers(1, 1 << 63, orders, dtype=np.uint64)
    result = store.apply(make_reports(ids), {"reports": ("a", orders)})
    actual = wal.stat().st_size - before
    estimate = estimate_wal_bytes(result.rows_written)
    assert actual <= estimate <= 4 * actual
