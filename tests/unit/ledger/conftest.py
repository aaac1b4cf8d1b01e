"""Fixtures for the ledger tests: real SQLite files in tmp_path and a report builder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.store import LedgerStore
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason

SYMBOLS = {1: ("SOL/USDT", "SOL", "USDT"), 2: ("JUP/USDT", "JUP", "USDT")}

@pytest.fixture
def symbols() -> dict[int, tuple[str, str, str]]:
    return dict(SYMBOLS)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def config() -> LedgerConfig:
    return LedgerConfig()


@pytest.fixture
def engine(db_path: Path, config: LedgerConfig) -> Engine:
    engine = make_engine(db_path, synchronous=config.synchronous)
    init_db(engine, "paper", config)
    return engine


@pytest.fixture
def store(engine: Engine, config: LedgerConfig) -> LedgerStore:
    return LedgerStore(engine, SYMBOLS, config)


def _column(value: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value), (n,))


@pytest.fixture
def make_reports() -> Callable[..., np.ndarray]:
    """Build REPORT_DTYPE batches; scalars broadcast, FILLED reports fill fully at ``price``."""

    def build(
        client_order_ids: Sequence[int] | np.ndarray,
        *,
        status: OrderStatus | Sequence[int] = OrderStatus.FILLED,
        side: int | Sequence[int] = 1,
        quantity: float | Sequence[float] | np.ndarray = 1.0,
        price: float | Sequence[float] | np.ndarray = 100.0,
        fee: float | Sequence[float] | np.ndarray = 0.1,
        symbol_id: int | Sequence[int] = 1,
        reject_reason: RejectReason = RejectReason.NONE,
    ) -> np.ndarray:
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

    return build
