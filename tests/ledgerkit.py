"""Real ledger databases for tests, written through LedgerStore, and the report builder.

A plain function (tests/unit/ledger's ``make_reports`` fixture hands out this one), so that
other packages' tests and their writer threads can use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.store import LedgerStore
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason

SYMBOLS = {1: ("SOL/USDT", "SOL", "USDT"), 2: ("JUP/USDT", "JUP", "USDT")}


def _column(value: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value), (n,))


def reports(client_order_ids: Sequence[int] | np.ndarray, *,
            status: OrderStatus | Sequence[int] = OrderStatus.FILLED,
            side: int | Sequence[int] = 1,
            quantity: float | Sequence[float] | np.ndarray = 1.0,
            price: float | Sequence[float] | np.ndarray = 100.0,
            fee: float | Sequence[float] | np.ndarray = 0.1,
            symbol_id: int | Sequence[int] = 1,
            reject_reason: RejectReason = RejectReason.NONE) -> np.ndarray:
    """REPORT_DTYPE records; scalars broadcast, FILLED reports fill fully at ``price``."""
    n = len(client_order_ids)
    r = np.zeros(n, dtype=REPORT_DTYPE)
    r["client_order_id"] = np.asarray(client_order_ids, dtype=np.uint64)
    r["status"] = _column(status, n)
    filled = r["status"] == OrderStatus.FILLED
    r["side"] = _column(side, n)
    r["quantity"] = _column(quantity, n)
    r["limit_price"] = _column(price, n)
    r["filled_qty"] = np.where(filled, r["quantity"], 0.0)
    r["avg_price"] = np.where(filled, _column(price, n), 0.0)
    r["fee"] = np.where(filled, _column(fee, n), 0.0)
    r["symbol_id"] = _column(symbol_id, n)
    r["reject_reason"] = np.where(filled, 0, int(reject_reason))
    r["tick_seq"] = r["client_order_id"]
    r["tick_ingest_ns"] = 1_000
    r["decision_ns"] = 1_500
    r["send_ns"] = 2_500
    r["venue_ts_ns"] = 1_700_000_000_000_000_000
    r["venue_ref"] = [f"sig{int(i)}".encode() for i in r["client_order_id"]]
    return r


def new_ledger(path: Path, initial_balances: dict[str, float] | None = None) -> LedgerStore:
    """A fresh, initialised ledger database at ``path`` and its store."""
    config = LedgerConfig(initial_balances=initial_balances or {"USDT": 100_000.0})
    engine = make_engine(path)
    init_db(engine, "paper", config)
    return LedgerStore(engine, SYMBOLS, config)
