"""LedgerStore.apply: orders move only upwards, fills and money are booked exactly once,
cursors commit with the rows, and a restarted store continues exactly."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from pipeline.errors import BadInputError
from pipeline.ledger.accounting import PositionState
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import make_engine
from pipeline.ledger.models import AuditLog, Balance, Fill, Order, to_stored, to_u64
from pipeline.ledger.store import LedgerStore
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason

MakeReports = Callable[..., np.ndarray]
INITIAL_USDT = 100000.0


def _orders(engine: Engine) -> dict[int, Order]:
    with Session(engine) as session:
        return {to_u64(o.client_order_id): o for o in session.scalars(select(Order))}


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_new_report_inserts_the_order(store: LedgerStore, engine: Engine,
                                      make_reports: MakeReports) -> None:
    big_id = (1 << 64) - 5  # above int64: stored with the same bits, read back exactly
    result = store.apply(make_reports([big_id], status=OrderStatus.NEW, side=-1), {})
    assert (result.rows_written, result.duplicates, result.fills) == (2, 0, 0), \
        "the order and the signature its NEW report names"
    assert result.commit_seconds > 0
    order = _orders(engine)[big_id]
    assert order.client_order_id == to_stored(big_id) < 0
    assert (order.symbol, order.side, order.status, order.status_rank) == (
        "SOL/USDT", "sell", "new", 1)
    assert order.tick_to_order_ns == 1_500
    assert to_u64(order.tick_seq) == big_id
    assert order.venue_ref == f"sig{big_id}"
    assert order.reject_reason is None
    assert isinstance(order.created_at, datetime)
    assert _count(engine, "fills") == 0


def test_new_then_filled_across_batches(store: LedgerStore, engine: Engine,
                                        make_reports: MakeReports) -> None:
    store.apply(make_reports([7], status=OrderStatus.NEW), {})
    result = store.apply(make_reports([7], quantity=2.0, price=50.0, fee=0.25), {})
    assert (result.duplicates, result.fills) == (0, 1)
    order = _orders(engine)[7]
    assert (order.status, order.status_rank, order.filled_qty, order.avg_price, order.fee) == (
        "filled", 2, 2.0, 50.0, 0.25)
    with engine.connect() as conn:
        fill = conn.execute(select(Fill)).one()
    assert (fill.side, fill.quantity, fill.price, fill.fee) == ("buy", 2.0, 50.0, 0.25)
    assert fill.venue_ts_ns == 1_700_000_000_000_000_000


def test_new_and_filled_in_one_batch(store: LedgerStore, engine: Engine,
                                     make_reports: MakeReports) -> None:
    result = store.apply(make_reports([1, 1], status=[OrderStatus.NEW, OrderStatus.FILLED]), {})
    assert (result.duplicates, result.fills) == (0, 1)
    assert _orders(engine)[1].status == "filled"
    assert _count(engine, "orders") == 1
    assert _count(engine, "fills") == 1


def test_duplicates_are_not_doubled(store: LedgerStore, engine: Engine,
                                    make_reports: MakeReports) -> None:
    batch = make_reports(np.arange(1, 101), side=np.where(np.arange(100) % 3, 1, -1))
    store.apply(batch, {})
    before = store.summary()
    again = store.apply(np.concatenate([batch, batch]), {})
    assert (again.rows_written, again.duplicates, again.fills) == (0, 200, 0)
    assert store.summary() == before
    assert _count(engine, "fills") == 100


def test_second_final_report_is_a_duplicate(store: LedgerStore, engine: Engine,
                                            make_reports: MakeReports) -> None:
    store.apply(make_reports([3]), {})
    late = make_reports([3, 3], status=[OrderStatus.CANCELLED, OrderStatus.NEW])
    assert store.apply(late, {}).duplicates == 2
    assert _orders(engine)[3].status == "filled"
    # and within one batch: the first final report wins
    both = make_reports([4, 4], status=[OrderStatus.REJECTED, OrderStatus.FILLED])
    result = store.apply(both, {})
    assert (result.duplicates, result.fills) == (1, 0)
    assert _orders(engine)[4].status == "rejected"


def test_rejected_order_books_no_money(store: LedgerStore, engine: Engine,
                                       make_reports: MakeReports) -> None:
    store.apply(make_reports([9], status=OrderStatus.REJECTED,
                             reject_reason=RejectReason.MAX_POSITION), {})
    order = _orders(engine)[9]
    assert (order.status, order.reject_reason, order.filled_qty) == (
        "rejected", "MAX_POSITION", 0.0)
    assert _count(engine, "fills") == 0
    assert store.summary()["balances"] == {"USDT": INITIAL_USDT}


def _random_batches(make_reports: MakeReports, seed: int) -> list[np.ndarray]:
    """Orders on two symbols, each reported NEW in one batch and final in the next."""
    rng = np.random.default_rng(seed)
    batches, pending = [], np.zeros(0, dtype=REPORT_DTYPE)
    next_id = 1
    for _ in range(6):
        n = int(rng.integers(1, 200))
        ids = np.arange(next_id, next_id + n)
        next_id += n
        final = make_reports(
            ids, status=rng.choice([OrderStatus.FILLED] * 4 + [OrderStatus.REJECTED], n),
            side=rng.choice([1, -1], n), quantity=rng.uniform(0.01, 5.0, n),
            price=rng.uniform(10.0, 200.0, n), fee=rng.uniform(0.0, 0.5, n),
            symbol_id=rng.choice([1, 2], n),
        )
        new = final.copy()
        new["status"] = OrderStatus.NEW
        batches.append(np.concatenate([pending, new]))
        pending = final
    batches.append(pending)
    return batches


def _expected(batches: list[np.ndarray]) -> tuple[dict[str, float], dict[str, float]]:
    every = np.concatenate(batches)
    fills = every[every["status"] == OrderStatus.FILLED]
    signed = fills["filled_qty"] * fills["side"]
    notional = signed * fills["avg_price"]
    positions = {name: float(signed[fills["symbol_id"] == sid].sum())
                 for sid, name in [(1, "SOL/USDT"), (2, "JUP/USDT")]}
    balances = {"USDT": INITIAL_USDT - float(notional.sum()) - float(fills["fee"].sum()),
                "SOL": positions["SOL/USDT"], "JUP": positions["JUP/USDT"]}
    return positions, balances


def _assert_money(store: LedgerStore, engine: Engine, batches: list[np.ndarray]) -> None:
    positions, balances = _expected(batches)
    summary = store.summary()
    for name, qty in positions.items():
        assert summary["positions"][name]["quantity"] == pytest.approx(qty, abs=1e-9)
    assert summary["balances"] == pytest.approx(balances)
    with engine.connect() as conn:  # the database agrees with the cache
        latest = select(func.max(Balance.id)).group_by(Balance.asset)
        stored = dict(conn.execute(
            select(Balance.asset, Balance.amount).where(Balance.id.in_(latest))).all())
        signed_fills = conn.execute(text(
            "SELECT symbol, sum(CASE side WHEN 'buy' THEN quantity ELSE -quantity END) "
            "FROM fills GROUP BY symbol")).all()
        rows = conn.execute(text("SELECT symbol, quantity FROM positions")).all()
    assert stored == pytest.approx(balances)
    assert dict(rows) == pytest.approx(dict(signed_fills), abs=1e-9)


def test_positions_and_balances_follow_fills(store: LedgerStore, engine: Engine,
                                             make_reports: MakeReports) -> None:
    batches = _random_batches(make_reports, seed=1)
    for batch in batches:
        store.apply(batch, {})
    _assert_money(store, engine, batches)
    assert store.summary()["orders"]["filled"] == _count(engine, "fills")


def test_replay_after_restart_writes_nothing_twice(
    db_path: Path, engine: Engine, config: LedgerConfig,
    symbols: dict[int, tuple[str, str, str]], make_reports: MakeReports,
) -> None:
    batches = _random_batches(make_reports, seed=2)
    first = LedgerStore(engine, symbols, config)
    for i, batch in enumerate(batches[:4]):
        first.apply(batch, {"reports": ("ring-a", i + 1)})
    engine.dispose()
    # "Crash" after committing batch 3 but before consuming it: a new process replays it.
    engine2 = make_engine(db_path)
    second = LedgerStore(engine2, symbols, config)
    assert second.summary() == first.summary()
    assert second.cursor("reports", "ring-a") == 4
    replay = second.apply(batches[3], {"reports": ("ring-a", 4)})
    assert replay.duplicates == len(batches[3])
    assert replay.fills == 0
    for i, batch in enumerate(batches[4:], start=5):
        second.apply(batch, {"reports": ("ring-a", i)})
    _assert_money(second, engine2, batches)
    with engine2.connect() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM (SELECT client_order_id FROM fills "
            "GROUP BY client_order_id HAVING count(*) > 1)")).scalar_one() == 0


def test_cursor_is_per_ring_instance(store: LedgerStore, make_reports: MakeReports) -> None:
    assert store.cursor("reports", "ring-a") is None
    store.apply(make_reports([1]), {"reports": ("ring-a", 10), "other": ("ring-b", 3)})
    assert store.cursor("reports", "ring-a") == 10
    assert store.cursor("reports", "ring-z") is None  # a new ring instance starts afresh
    store.apply(make_reports([], status=OrderStatus.NEW), {"reports": ("ring-z", 2)})
    assert store.cursor("reports", "ring-z") == 2
    assert store.cursor("other", "ring-b") == 3


def test_failed_transaction_stores_neither_rows_nor_cursor(
    store: LedgerStore, engine: Engine, make_reports: MakeReports
) -> None:
    store.apply(make_reports([1, 2], status=OrderStatus.NEW), {"reports": ("ring-a", 2)})
    # A fill already exists for order 2 (written behind the ledger's back): booking the
    # FILLED report for it violates fills' unique key after order 1 was already written.
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO fills (client_order_id, symbol, side, quantity, price, fee, venue_ref, "
            "venue_ts_ns, created_at) VALUES (2, 'SOL/USDT', 'buy', 1, 1, 0, 'x', 0, "
            "'2024-01-01 00:00:00.000000')"))
    before = store.summary()
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        store.apply(make_reports([1, 2]), {"reports": ("ring-a", 4)})
    assert store.cursor("reports", "ring-a") == 2
    assert _orders(engine)[1].status == "new"
    assert store.summary() == before
    # the caches were not touched: the next good batch books from the committed state
    store.apply(make_reports([1], price=10.0, fee=0.0), {"reports": ("ring-a", 5)})
    assert store.summary()["balances"] == {"USDT": INITIAL_USDT - 10.0, "SOL": 1.0}


@pytest.mark.parametrize("case", [
    ("status", 9, "unknown status"),
    ("side", 0, "side"),
    ("symbol_id", 99, "unknown symbol_id"),
    ("reject_reason", 999, "unknown reject_reason"),
    ("filled_qty", 0.0, "fill without"),
    ("avg_price", float("nan"), "fill without"),
    ("quantity", -1.0, "quantity"),
])
def test_malformed_reports_write_nothing(store: LedgerStore, engine: Engine,
                                         make_reports: MakeReports,
                                         case: tuple[str, object, str]) -> None:
    field, value, message = case
    batch = make_reports([1, 2, 3])
    batch[field][1] = value
    with pytest.raises(BadInputError, match=message):
        store.apply(batch, {"reports": ("ring-a", 3)})
    assert _count(engine, "orders") == 0
    assert store.cursor("reports", "ring-a") is None


def test_wrong_dtype_and_bad_cursor_refused(store: LedgerStore, make_reports: MakeReports
                                            ) -> None:
    with pytest.raises(BadInputError, match="REPORT_DTYPE"):
        store.apply(np.zeros(3, dtype=np.int64), {})
    with pytest.raises(BadInputError, match="cursor"):
        store.apply(make_reports([1]), {"reports": ("", 1)})
    with pytest.raises(BadInputError, match="max_batch"):
        store.apply(make_reports(np.arange(1, 8194)), {})


def test_config_and_audit(store: LedgerStore, engine: Engine) -> None:
    assert store.trade_enabled() is False
    store.set_config("TRADE_ENABLED", "true", "operator", {"via": "cli"})
    assert store.trade_enabled() is True
    with pytest.raises(BadInputError, match="TRADE_ENABLED"):
        store.set_config("TRADE_ENABLED", "yes", "operator")
    store.audit("executor", "executor.start", {"pid": 42})
    with engine.connect() as conn:
        rows = conn.execute(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(r.actor, r.action) for r in rows] == [
        ("ledger", "ledger.init"), ("operator", "config.set"), ("executor", "executor.start")]
    assert json.loads(rows[1].detail) == {"key": "TRADE_ENABLED", "old": "false", "new": "true",
                                          "via": "cli"}
    assert json.loads(rows[2].detail) == {"pid": 42}


def test_summary(store: LedgerStore, make_reports: MakeReports) -> None:
    store.apply(make_reports([1, 2, 3], status=[OrderStatus.FILLED, OrderStatus.NEW,
                                                OrderStatus.REJECTED], price=100.0, fee=1.0), {})
    summary = store.summary()
    assert summary["orders"] == {"filled": 1, "new": 1, "rejected": 1}
    assert summary["fills"] == 1
    assert summary["positions"] == {"SOL/USDT": {"quantity": 1.0, "avg_price": 100.0,
                                                 "realized_pnl": 0.0, "fees": 1.0}}
    assert summary["balances"] == {"SOL": 1.0, "USDT": INITIAL_USDT - 101.0}
    assert store.positions() == {"SOL/USDT": PositionState(1.0, 100.0, 0.0, 1.0)}
    assert store.balances() == summary["balances"]


def test_full_size_batches_commit_completely(
    store: LedgerStore, config: LedgerConfig, make_reports: MakeReports
) -> None:
    """Batches at max_batch commit whole (the speed is measured by `pipeline bench`)."""
    assert config.synchronous == "FULL"
    half = config.max_batch // 2
    batches = _random_batches_sized(make_reports, half, count=4)
    for i, batch in enumerate(batches):
        store.apply(batch, {"reports": ("ring-a", i)})
    assert store.cursor("reports", "ring-a") == len(batches) - 1
    orders = {int(c) for batch in batches for c in batch["client_order_id"]}
    assert sum(store.summary()["orders"].values()) == len(orders)


def _random_batches_sized(make_reports: MakeReports, half: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    batches, pending = [], np.zeros(0, dtype=REPORT_DTYPE)
    for b in range(count):
        ids = np.arange(b * half + 1, (b + 1) * half + 1)
        final = make_reports(ids, side=rng.choice([1, -1], half), price=rng.uniform(90, 110, half))
        new = final.copy()
        new["status"] = OrderStatus.NEW
        batches.append(np.concatenate([pending, new]))
        pending = final
    return batches
