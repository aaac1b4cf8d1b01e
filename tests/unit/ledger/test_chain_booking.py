"""What a chain venue adds to the ledger: every signed transaction, network fees off the
native asset (also for transactions that failed on chain), chain readings and opening
balances."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, text

from pipeline.errors import BadInputError
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.store import LedgerStore
from pipeline.records import OrderStatus, RejectReason, ReportDetail

MakeReports = Callable[..., np.ndarray]
SYMBOLS = {1: ("SOL/USDT", "SOL", "USDT")}
NATIVE = "native SOL"


@pytest.fixture
def chain_store(engine: Engine, config: LedgerConfig) -> LedgerStore:
    return LedgerStore(engine, SYMBOLS, config, native_asset=NATIVE)


def _rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]


def _signed(make_reports: MakeReports, coid: int, signature: str, height: int) -> np.ndarray:
    report = make_reports([coid], status=OrderStatus.NEW)
    report["venue_ref"] = signature.encode()
    report["last_valid_height"] = height
    return report


def test_every_signature_of_a_resigned_order_is_kept_once(
        chain_store: LedgerStore, engine: Engine, make_reports: MakeReports) -> None:
    first = _signed(make_reports, 3, "firstsig", 1_000)
    second = _signed(make_reports, 3, "secondsig", 1_160)
    chain_store.apply(first, {})
    result = chain_store.apply(np.concatenate([second, first]), {})  # re-sign plus a replay
    assert result.duplicates == 2, "the order row does not change"
    assert _rows(engine, "SELECT signature, last_valid_block_height FROM order_signatures "
                         "ORDER BY 2") == [("firstsig", 1_000), ("secondsig", 1_160)]
    assert _rows(engine, "SELECT status, venue_ref FROM orders") == [("new", "firstsig")]


def test_network_fees_come_off_the_native_asset_also_for_failed_transactions(
        chain_store: LedgerStore, engine: Engine, make_reports: MakeReports) -> None:
    chain_store.record_chain_balances({NATIVE: 2.0, "SOL": 0.0, "USDT": 100_000.0},
                                      "startup", opening={NATIVE: 2.0})
    filled = make_reports([1], quantity=1.0, price=150.0, fee=0.0)
    filled["network_fee"] = 0.000015
    failed = make_reports([2], status=OrderStatus.REJECTED,
                          reject_reason=RejectReason.VENUE_ERROR)
    failed["network_fee"] = 0.000005
    chain_store.apply(np.concatenate([filled, failed]), {})
    balances = chain_store.balances()
    assert balances[NATIVE] == pytest.approx(2.0 - 0.00002, abs=1e-12)
    assert balances["SOL"] == pytest.approx(1.0)
    assert _rows(engine, "SELECT client_order_id, network_fee FROM orders ORDER BY 1") == [
        (1, 0.000015), (2, 0.000005)]
    # A replay of the same final reports books no fee twice.
    chain_store.apply(np.concatenate([filled, failed]), {})
    assert chain_store.balances()[NATIVE] == pytest.approx(2.0 - 0.00002, abs=1e-12)


def test_a_network_fee_without_a_native_asset_is_refused(
        store: LedgerStore, make_reports: MakeReports) -> None:
    report = make_reports([1])
    report["network_fee"] = 0.00001
    with pytest.raises(BadInputError, match="no native asset"):
        store.apply(report, {})


def test_a_negative_network_fee_is_malformed(chain_store: LedgerStore,
                                             make_reports: MakeReports) -> None:
    report = make_reports([1])
    report["network_fee"] = -1.0
    with pytest.raises(BadInputError, match="network_fee"):
        chain_store.apply(report, {})


def test_chain_readings_keep_the_ledger_amount_and_opening_balances_are_audited(
        chain_store: LedgerStore, engine: Engine) -> None:
    chain_store.record_chain_balances({NATIVE: 1.5, "USDT": 100_000.0}, "startup",
                                      opening={NATIVE: 1.5})
    chain_store.record_chain_balances({NATIVE: 1.4, "USDT": 100_000.0}, "fills")
    assert _rows(engine, "SELECT asset, amount, ledger_amount, reason FROM chain_balances "
                         "ORDER BY id") == [
        ("USDT", 100_000.0, 100_000.0, "startup"), (NATIVE, 1.5, 1.5, "startup"),
        ("USDT", 100_000.0, 100_000.0, "fills"), (NATIVE, 1.4, 1.5, "fills")]
    assert chain_store.chain_assets_read() == {NATIVE, "USDT"}
    assert _rows(engine, "SELECT action FROM audit_log WHERE action = 'balances.opening'") == [
        ("balances.opening",)]
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="history"), engine.begin() as conn:
        conn.execute(text("DELETE FROM chain_balances"))


def test_open_orders_counts_orders_still_new(chain_store: LedgerStore,
                                             make_reports: MakeReports) -> None:
    chain_store.apply(_signed(make_reports, 1, "a", 10), {})
    chain_store.apply(_signed(make_reports, 2, "b", 10), {})
    assert chain_store.open_orders() == 2
    chain_store.apply(make_reports([1]), {})
    assert chain_store.open_orders() == 1


def test_a_signature_keeps_the_wallet_before_signing_and_the_fill_its_source(
        chain_store: LedgerStore, engine: Engine, make_reports: MakeReports) -> None:
    new = _signed(make_reports, 4, "sig4", 900)
    new["wallet_slot"], new["wallet_lamports"], new["message_fee"] = 77, 5 * 10**9, 15_000
    new["wallet_base"], new["wallet_quote"] = 2 * 10**9, 10**11
    unknown = new.copy()  # the same order reported again with an unknown outcome
    unknown["detail"] = ReportDetail.OUTCOME_UNKNOWN
    unknown[["wallet_slot", "wallet_lamports", "message_fee"]] = (0, 0, 0)
    filled = make_reports([4], quantity=1.0, price=150.0, fee=0.0)
    filled["venue_ref"], filled["detail"] = b"sig4", ReportDetail.FROM_BALANCE_CHANGE
    result = chain_store.apply(np.concatenate([new, unknown]), {})
    assert (result.unknown_outcomes, result.signed, result.duplicates) == (1, 2, 0)
    chain_store.apply(filled, {})
    assert _rows(engine, "SELECT wallet_slot, wallet_lamports, wallet_base, wallet_quote, "
                         "message_fee FROM order_signatures") == [
        (77, 5 * 10**9, 2 * 10**9, 10**11, 15_000)], "the first report of a signature wins"
    assert _rows(engine, "SELECT status, outcome_source FROM orders") == [
        ("filled", "balance_change")]
