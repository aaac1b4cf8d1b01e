"""Client order ids: unique across shards (hosts) and restarts, increasing within a shard,
below 2**62, and never equal to an id the first layout (``start_ms << 22 | counter``) wrote."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import OperationalError
from pipeline.ids import (
    COUNTER_BITS,
    EPOCH_MS,
    FIRST_LAYOUT_MIN,
    SHARD_LIMIT,
    START_BITS,
    ClientOrderIds,
    shard_of,
)

COUNTER_LIMIT = 1 << COUNTER_BITS
LAST_MS = EPOCH_MS + (1 << START_BITS) - 1
# Start times with room for the rollovers a test makes (each takes at most one millisecond).
starts_ms = st.integers(EPOCH_MS, LAST_MS - 1_000_000)
shards = st.integers(0, SHARD_LIMIT - 1)
# Sizes around the counter's capacity, so that takes roll over and span several starts.
sizes = st.lists(st.integers(0, 2 * COUNTER_LIMIT + 5), min_size=1, max_size=12)


def _clock(reads_ms: list[int]) -> Callable[[], int]:
    """A clock returning ``reads_ms`` in turn, then its last read for ever (it stops)."""
    values: Iterator[int] = iter(reads_ms)
    last = [reads_ms[0]]

    def read() -> int:
        last[0] = next(values, last[0])
        return last[0]
    return read


def _taken(ids: ClientOrderIds, counts: list[int]) -> list[int]:
    return [int(i) for count in counts for i in ids.take(count).tolist()]


def _first_layout(start_ms: int, counter: int) -> int:
    return start_ms << 22 | counter


# One incarnation: its shard, its start, the clock's later reads around it, its take sizes.
Incarnation = tuple[int, int, list[int], list[int]]
incarnations = st.tuples(shards, starts_ms, st.lists(st.integers(-5, 5), max_size=6), sizes)


def _ids_of(shard: int, start: int, steps: list[int], counts: list[int]) -> set[int]:
    return set(_taken(ClientOrderIds(shard, _clock([start, *(start + s for s in steps)])),
                      counts))


@settings(max_examples=200, deadline=None)
@given(a=incarnations, b=incarnations, same_ms=st.booleans())
def test_two_shards_never_share_an_id(a: Incarnation, b: Incarnation, same_ms: bool) -> None:
    """Two hosts, whenever they start (the same millisecond too), whatever they take."""
    shard_a, start_a, steps_a, counts_a = a
    shard_b, start_b, steps_b, counts_b = b
    if shard_b == shard_a:
        shard_b = (shard_b + 1) % SHARD_LIMIT
    if same_ms:
        start_b = start_a
    assert not _ids_of(shard_a, start_a, steps_a, counts_a) \
        & _ids_of(shard_b, start_b, steps_b, counts_b)


@settings(max_examples=200, deadline=None)
@given(shard=shards, start=starts_ms, counts=sizes,
       clock_steps=st.lists(st.integers(-3, 3), max_size=8))
def test_ids_of_one_shard_increase_across_takes_and_rollovers(
        shard: int, start: int, counts: list[int], clock_steps: list[int]) -> None:
    """Whatever the clock does after the start (stands still, goes back), a take that finds
    the counter spent moves the start past the last one: ids keep increasing."""
    ids = ClientOrderIds(shard, _clock([start, *(start + s for s in clock_steps)]))
    taken = _taken(ids, counts)
    assert len(taken) == sum(counts)
    assert all(x < y for x, y in itertools.pairwise(taken))
    assert {shard_of(i) for i in taken} <= {shard}
    assert all(0 <= i < FIRST_LAYOUT_MIN < 2**63 for i in taken)


def test_a_spent_counter_with_a_frozen_clock_restarts_above_the_last_id() -> None:
    ids = ClientOrderIds(7, lambda: EPOCH_MS + 1000)
    first = ids.take(COUNTER_LIMIT)  # the whole counter of this start
    second = ids.take(1)  # the clock did not move: the start is forced one past
    assert int(second[0]) > int(first[-1])
    assert int(second[0]) == int(first[0]) + (1 << 21)  # the next start, counter 0
    assert ids.take(COUNTER_LIMIT).tolist()[0] > int(second[0])  # does not fit: a new start


@settings(max_examples=100, deadline=None)
@given(shard=shards, start=starts_ms, counts=sizes, restart_after_ms=st.integers(1, 10**6))
def test_a_restarted_incarnation_started_later_is_above_the_last(
        shard: int, start: int, counts: list[int], restart_after_ms: int) -> None:
    """No shared state: a restart reads a later clock than any start before it."""
    before = ClientOrderIds(shard, lambda: start)
    taken = _taken(before, counts)
    last = max(taken, default=0)
    last_start_ms = max(start, EPOCH_MS + (last >> 21))  # the start inside the last id
    after = ClientOrderIds(shard, lambda: last_start_ms + restart_after_ms)
    assert int(after.take(1)[0]) > last


@settings(max_examples=200, deadline=None)
@given(shard=shards, start=starts_ms, counts=sizes,
       # The first layout's ids as written by a real clock: after 2004-11-03 (2**40 ms),
       # and before 2039-09-07 (2**41 ms), past which they no longer fit 63 bits.
       old_start_ms=st.integers(1 << 40, (1 << 41) - 1), old_counter=st.integers(0, 2**22 - 1))
def test_no_id_equals_one_of_the_first_layout(shard: int, start: int, counts: list[int],
                                               old_start_ms: int, old_counter: int) -> None:
    old = _first_layout(old_start_ms, old_counter)
    assert FIRST_LAYOUT_MIN <= old < 2**63
    taken = _taken(ClientOrderIds(shard, lambda: start), counts)
    assert old not in taken
    assert max(taken, default=0) < FIRST_LAYOUT_MIN
    with pytest.raises(ValueError, match="has no shard inside"):
        shard_of(old)


def test_an_existing_database_of_first_layout_ids_takes_the_new_ones() -> None:
    """The ledger's unique client_order_id column, filled by the first layout at the same
    instants: the new ids insert without a clash."""
    now_ms = EPOCH_MS + 330 * 86_400_000  # late 2026
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE orders (client_order_id BIGINT NOT NULL UNIQUE)")
    old = [_first_layout(now_ms + ms, counter) for ms in range(3) for counter in range(50)]
    conn.executemany("INSERT INTO orders VALUES (?)", [(i,) for i in old])
    for shard in (0, 1, SHARD_LIMIT - 1):
        new = ClientOrderIds(shard, lambda: now_ms).take(50)
        conn.executemany("INSERT INTO orders VALUES (?)", [(int(i),) for i in new])
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 150 + 3 * 50


def test_the_shard_is_read_back_and_the_layout_is_as_documented() -> None:
    ids = ClientOrderIds(SHARD_LIMIT - 1, lambda: EPOCH_MS + 5).take(2)
    assert ids.dtype == np.uint64
    base = 5 << 21 | (SHARD_LIMIT - 1) << 11  # start 5 ms, the last shard, counter 0
    assert ids.tolist() == [base, base + 1]
    assert [shard_of(int(i)) for i in ids] == [SHARD_LIMIT - 1] * 2


@pytest.mark.parametrize("shard", [-1, SHARD_LIMIT])
def test_a_shard_outside_the_bits_is_refused(shard: int) -> None:
    with pytest.raises(ValueError, match="does not fit 10 bits"):
        ClientOrderIds(shard)


@pytest.mark.parametrize("now_ms", [0, EPOCH_MS - 1, LAST_MS + 1])
def test_a_clock_outside_the_layout_is_refused(now_ms: int) -> None:
    with pytest.raises(OperationalError, match="fix the clock"):
        ClientOrderIds(0, lambda: now_ms)


def test_the_last_start_runs_out_loudly() -> None:
    ids = ClientOrderIds(0, lambda: LAST_MS)
    ids.take(COUNTER_LIMIT)
    with pytest.raises(OperationalError, match="ran out of start times"):
        ids.take(1)


def test_a_negative_count_is_refused_and_zero_is_nothing() -> None:
    ids = ClientOrderIds(0)
    assert len(ids.take(0)) == 0
    with pytest.raises(ValueError, match="cannot take -1"):
        ids.take(-1)
