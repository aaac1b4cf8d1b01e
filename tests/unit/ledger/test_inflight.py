"""The ledger's read API for signed, unsettled orders: what a restarted chain venue settles.

Reports are booked by the real store into a real SQLite file; the read API opens it
read-only, as the executor's Solana factory does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.inflight import Signed, signed_in_flight
from pipeline.ledger.store import LedgerStore
from pipeline.records import OrderStatus

MakeReports = Callable[..., np.ndarray]
NO_RING = Path("/nonexistent/reports-ring")  # no segment: nothing left to wait for


def _new(make_reports: MakeReports, coid: int, signature: str, height: int) -> np.ndarray:
    report = make_reports([coid], status=OrderStatus.NEW)
    report["venue_ref"] = signature.encode()
    report["last_valid_height"] = height
    report["wallet_slot"], report["wallet_lamports"] = 9, 5_000_000
    report["wallet_base"], report["wallet_quote"], report["message_fee"] = 7, 8, 5_000
    return report


def test_every_signature_of_each_order_still_new(
        engine: Engine, config: LedgerConfig, db_path: Path,
        make_reports: MakeReports) -> None:
    store = LedgerStore(engine, {1: ("SOL/USDT", "SOL", "USDT")}, config,
                        native_asset="native SOL")
    store.apply(np.concatenate([_new(make_reports, 3, "first", 1_000),
                                _new(make_reports, 4, "settled", 1_100)]), {})
    store.apply(np.concatenate([_new(make_reports, 3, "second", 1_160),
                                make_reports([4], quantity=1.0, price=150.0)]), {})
    assert signed_in_flight(db_path, NO_RING) == {3: [
        Signed("first", 1_000, (9, 5_000_000, 7, 8), 5_000),
        Signed("second", 1_160, (9, 5_000_000, 7, 8), 5_000)]}


def test_no_database_or_no_schema_means_nothing_in_flight(tmp_path: Path) -> None:
    assert signed_in_flight(tmp_path / "missing.db", NO_RING) == {}
    empty = tmp_path / "empty.db"
    empty.touch()
    assert signed_in_flight(empty, NO_RING) == {}
