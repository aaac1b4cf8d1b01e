"""The ledger's chain check against a real localnet: readings recorded next to the ledger's
amounts, opening balances adopted once, a transfer nobody booked stops trading, and a
reading taken while reports arrived is discarded."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from localnet_kit import Localnet, running_localnet
from prometheus_client import CollectorRegistry
from solders.account import Account
from sqlalchemy import Engine, event, text
from testkit import eventually, unique_name

from pipeline.config import PipelineConfig, load_config
from pipeline.ledger.chain_watch import ChainCheck, ChainWatch
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.store import CommitResult, LedgerStore
from pipeline.localnet.manifest import Manifest
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason, ReportDetail
from pipeline.ring import RingReader, RingSpec, RingWriter
from pipeline.solana.account import NATIVE_SOL
from pipeline.solana.tokens import pack_account, unpack_account

RUN_ID = uuid.uuid4()
MOVED_MONEY = CommitResult(rows_written=2, duplicates=0, fills=1, commit_seconds=0.0,
                           balances_changed=2)


@dataclass
class Rig:
    net: Localnet
    config: PipelineConfig
    engine: Engine
    store: LedgerStore
    writer: RingWriter
    reader: RingReader
    check: ChainCheck
    registry: CollectorRegistry
    mismatches: list[str]

    def settle(self, what: str, done: str = "compared") -> None:
        """Step the check like the ledger loop does until a reading has ``done``."""
        before = self.sample(done)

        def settled() -> bool:
            self.check.step(time.monotonic())
            return self.sample(done) > before

        eventually(settled, timeout_s=20, interval_s=0.01, message=what)

    def sample(self, outcome: str) -> float:
        value = self.registry.get_sample_value("pipeline_chain_readings_total",
                                               {"outcome": outcome})
        return value or 0.0

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql)).all()]


@pytest.fixture
def rig(tmp_path: Path, shm_dir: Path) -> Iterator[Rig]:
    data_dir = tmp_path / "var"
    with running_localnet(tmp_path / "net") as net:
        world = net.world
        Manifest(url=net.url, trader_keypair=str(world.trader_key_path),
                 trader=str(world.trader.pubkey()), maker=str(world.maker.pubkey()),
                 mints={a.name: (str(a.mint), a.decimals) for a in world.assets.values()},
                 pid=0).write(data_dir / "run")
        config = load_config(environ={}, overrides={"env": "localnet",
                                                    "data_dir": str(data_dir)})
        engine = make_engine(config.paths.database)
        init_db(engine, config.env, config.ledger)
        store = LedgerStore(engine, config.symbol_table(), config.ledger,
                            native_asset=NATIVE_SOL)
        spec = RingSpec(unique_name("reports"), REPORT_DTYPE, 64, lossless=True,
                        readers=("ledger",))
        writer = RingWriter(spec, env="localnet", run_id=RUN_ID, shm_dir=shm_dir)
        reader = RingReader(spec, "ledger", env="localnet", run_id=RUN_ID, shm_dir=shm_dir)
        registry = CollectorRegistry()
        mismatches: list[str] = []
        log = logging.getLogger("test.chain")
        check = ChainCheck(ChainWatch(config, NATIVE_SOL, log), store, reports=lambda: reader,
                           tolerance=1e-6, interval_s=0.0, recheck_s=3600.0,
                           on_mismatch=lambda problem, _d: mismatches.append(problem),
                           registry=registry, log=log)
        try:
            yield Rig(net, config, engine, store, writer, reader, check, registry, mismatches)
        finally:
            check.close()
            reader.close()
            writer.close()
            engine.dispose()


def _take_tokens(net: Localnet, asset: str, amount: int) -> None:
    """Move trader tokens without any order: money the ledger never booked."""
    key = net.world.token_account(net.world.trader.pubkey(), asset)
    account = net.chain.account(key)
    assert account is not None
    mint, owner, held = unpack_account(bytes(account.data))
    net.chain.set_account(key, Account(account.lamports, pack_account(mint, owner, held - amount),
                                       account.owner, account.executable, account.rent_epoch))


def test_the_startup_reading_is_recorded_and_adopts_the_opening_balances(rig: Rig) -> None:
    assert rig.registry.get_sample_value("pipeline_chain_watch_running") == 1
    started = rig.registry.get_sample_value("pipeline_chain_last_reading_timestamp_seconds")
    assert started is not None
    rig.settle("the start-up reading")
    read = rig.registry.get_sample_value("pipeline_chain_last_reading_timestamp_seconds")
    assert read is not None
    assert read >= started
    readings = {asset: (amount, ledger) for asset, amount, ledger in rig.rows(
        "SELECT asset, amount, ledger_amount FROM chain_balances WHERE reason = 'startup'")}
    trader_sol = rig.net.chain.account(rig.net.world.trader.pubkey())
    assert trader_sol is not None
    assert readings == {"SOL": (10.0, 10.0), "USDT": (100_000.0, 100_000.0),
                        NATIVE_SOL: (trader_sol.lamports / 1e9, trader_sol.lamports / 1e9)}
    assert rig.store.balances()[NATIVE_SOL] == trader_sol.lamports / 1e9
    assert rig.rows("SELECT count(*) FROM audit_log WHERE action = 'balances.opening'") == [
        (1,)]
    assert rig.registry.get_sample_value("pipeline_chain_balance_mismatch") == 0
    assert rig.mismatches == []


def test_a_transfer_nobody_booked_is_a_mismatch(rig: Rig) -> None:
    rig.settle("the start-up reading")
    _take_tokens(rig.net, "USDT", 5 * 10**6)
    rig.check.committed(MOVED_MONEY)
    rig.settle("the reading after the transfer")
    assert rig.mismatches == ["USDT: chain 99995.0 vs ledger 100000.0"]
    assert rig.registry.get_sample_value("pipeline_chain_balance_mismatch") == 1
    assert rig.rows("SELECT amount, ledger_amount FROM chain_balances WHERE asset = 'USDT' "
                    "AND reason = 'fills'") == [(99_995.0, 100_000.0)]
    # Only an asset's first reading opens it: later ones never adopt the chain's numbers.
    assert rig.rows("SELECT count(*) FROM audit_log WHERE action = 'balances.opening'") == [
        (1,)]


def test_a_reading_taken_while_reports_arrived_is_discarded(rig: Rig) -> None:
    rig.check.step(time.monotonic())  # asks for the start-up reading
    assert rig.check.waiting
    report = np.zeros(1, dtype=REPORT_DTYPE)
    report["status"] = OrderStatus.NEW
    rig.writer.write(report)  # a NEW report: its transaction may be landing now
    rig.settle("the stale reading", done="stale")
    assert rig.rows("SELECT count(*) FROM chain_balances") == [(0,)]
    rig.reader.advance(1)  # the ledger commits it: quiet again, the reading is retried
    rig.settle("the retried reading")
    assert rig.rows("SELECT count(*) FROM chain_balances WHERE reason = 'startup'") == [(3,)]


def test_no_reading_is_asked_for_while_the_ledger_has_unread_reports(rig: Rig) -> None:
    report = np.zeros(1, dtype=REPORT_DTYPE)
    rig.writer.write(report)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # several looks for a quiet moment, none found
        rig.check.step(time.monotonic())
    assert not rig.check.waiting
    assert rig.check.wants_reading


def test_fees_booked_before_the_first_reading_do_not_make_a_mismatch(rig: Rig) -> None:
    """Trading can start before the ledger's first quiet moment: the first reading of each
    asset still opens it at the chain's amount."""
    report = np.zeros(1, dtype=REPORT_DTYPE)
    report["client_order_id"], report["symbol_id"], report["side"] = 1, 1, 1
    report["quantity"] = report["limit_price"] = 1.0
    report["status"], report["reject_reason"] = OrderStatus.REJECTED, 4
    report["network_fee"] = 0.000005  # a transaction that failed on chain still paid
    rig.store.apply(report, {})
    assert rig.store.balances()[NATIVE_SOL] == -0.000005
    rig.settle("the first reading")
    assert rig.mismatches == []
    trader = rig.net.chain.account(rig.net.world.trader.pubkey())
    assert trader is not None
    assert rig.store.balances()[NATIVE_SOL] == trader.lamports / 1e9


def test_a_draining_ledger_takes_a_closing_reading_when_money_moved(rig: Rig) -> None:
    rig.settle("the start-up reading")
    rig.check.committed(MOVED_MONEY)
    eventually(lambda: rig.check.closing(time.monotonic()), timeout_s=10, interval_s=0.01,
               message="the closing reading")
    assert rig.rows("SELECT count(*) FROM chain_balances WHERE reason = 'shutdown'") == [(3,)]


def test_an_account_that_cannot_be_read_stops_the_watch_once(tmp_path: Path,
                                                           shm_dir: Path) -> None:
    """devnet without [executor.solana] endpoints: one error, then no more asking."""
    config = load_config(environ={}, overrides={"env": "devnet", "data_dir": str(tmp_path),
                                                "executor": {"venue": "solana"}})
    engine = make_engine(config.paths.database)
    init_db(engine, config.env, config.ledger)
    store = LedgerStore(engine, config.symbol_table(), config.ledger, native_asset=NATIVE_SOL)
    spec = RingSpec(unique_name("reports"), REPORT_DTYPE, 64, lossless=True,
                    readers=("ledger",))
    reader = RingReader(spec, "ledger", env="devnet", run_id=RUN_ID, shm_dir=shm_dir)
    registry = CollectorRegistry()
    log = logging.getLogger("test.chain")
    check = ChainCheck(ChainWatch(config, NATIVE_SOL, log), store, reports=lambda: reader,
                       tolerance=1e-6, interval_s=0.0, recheck_s=0.0,
                       on_mismatch=lambda _p, _d: None, registry=registry, log=log)

    def gave_up() -> bool:
        check.step(time.monotonic())
        return not check.wants_reading

    try:
        eventually(gave_up, timeout_s=10, interval_s=0.01, message="the watch gave up")
        for _ in range(20):
            check.step(time.monotonic())
        assert registry.get_sample_value("pipeline_chain_readings_total",
                                         {"outcome": "error"}) == 1
        assert registry.get_sample_value("pipeline_chain_watch_running") == 0  # for good
        assert check.closing(time.monotonic())
    finally:
        check.close()
        reader.close()
        engine.dispose()


def test_a_database_refusing_writes_delays_the_reading_and_the_ledger_goes_on(
        rig: Rig) -> None:
    """SQLite refuses every write (query_only, as a read-only or failing disk would)."""
    rig.settle("the start-up reading")
    rig.engine.dispose()

    def read_only(dbapi: sqlite3.Connection, _record: object) -> None:
        dbapi.execute("PRAGMA query_only = 1")

    event.listen(rig.engine, "connect", read_only)
    _take_tokens(rig.net, "USDT", 10**6)
    rig.check.committed(MOVED_MONEY)
    before = rig.sample("error")
    eventually(lambda: (rig.check.step(time.monotonic()), rig.sample("error") > before)[1],
               timeout_s=20, interval_s=0.01, message="the write failed and was counted")
    assert rig.mismatches == [], "nothing was decided on a reading that was not stored"
    event.remove(rig.engine, "connect", read_only)
    rig.engine.dispose()
    rig.settle("the reading, once the database takes writes again")
    assert rig.mismatches == ["USDT: chain 99999.0 vs ledger 100000.0"]


def _signed_report(status: OrderStatus, *, detail: ReportDetail = ReportDetail.NONE
                   ) -> np.ndarray:
    report = np.zeros(1, dtype=REPORT_DTYPE)
    report["client_order_id"], report["symbol_id"], report["side"] = 7, 1, 1
    report["quantity"] = report["limit_price"] = 1.0
    report["status"], report["detail"] = status, detail
    report["venue_ref"] = b"5" * 87
    if status == OrderStatus.REJECTED:
        report["reject_reason"] = RejectReason.VENUE_ERROR
    return report


def test_a_signed_order_ending_as_a_reject_is_followed_by_a_reading(rig: Rig) -> None:
    """A reject that moved no booked money still had a signed transaction: if it landed
    after all, only the chain can say so."""
    rig.settle("the start-up reading")
    rig.store.apply(_signed_report(OrderStatus.NEW), {})
    result = rig.store.apply(_signed_report(OrderStatus.REJECTED), {})
    assert (result.settled_signed, result.balances_changed) == (1, 0)
    _take_tokens(rig.net, "SOL", 10**9)  # as if the "rejected" swap had sold 1 SOL
    rig.check.committed(result)
    rig.settle("the reading after the reject")
    assert rig.mismatches == ["SOL: chain 9.0 vs ledger 10.0"]
    assert rig.rows("SELECT count(*) FROM chain_balances WHERE reason = 'settled'") == [(3,)]


def test_an_unknown_outcome_takes_a_snapshot_at_once_and_compares_nothing(rig: Rig) -> None:
    rig.settle("the start-up reading")
    rig.store.apply(_signed_report(OrderStatus.NEW), {})
    result = rig.store.apply(_signed_report(OrderStatus.NEW,
                                            detail=ReportDetail.OUTCOME_UNKNOWN), {})
    assert (result.unknown_outcomes, result.duplicates) == (1, 0)
    assert rig.rows("SELECT status FROM orders WHERE client_order_id = 7") == [("new",)]
    assert rig.rows("SELECT count(*) FROM audit_log WHERE action = 'order.outcome_unknown'"
                    ) == [(1,)]
    _take_tokens(rig.net, "SOL", 10**9)  # the unknown swap landed
    rig.check.committed(result)
    rig.settle("the snapshot", done="snapshot")
    assert rig.rows("SELECT asset, amount FROM chain_balances WHERE reason = "
                    "'unknown_outcome' AND asset = 'SOL'") == [("SOL", 9.0)]
    assert rig.mismatches == [], "an open order may still land: nothing is compared"
    # The order stays open, so a stopping ledger records what the chain holds, uncompared.
    eventually(lambda: rig.check.closing(time.monotonic()), timeout_s=10, interval_s=0.01,
               message="the closing snapshot")
    assert rig.rows("SELECT count(*) FROM chain_balances WHERE reason = 'shutdown_in_flight'"
                    ) == [(3,)]
    assert rig.mismatches == []


def test_a_stopping_ledger_reads_the_chain_whenever_anything_was_signed(rig: Rig) -> None:
    rig.settle("the start-up reading")
    rig.store.apply(_signed_report(OrderStatus.NEW), {})
    result = rig.store.apply(_signed_report(OrderStatus.REJECTED), {})
    rig.check.committed(result)
    rig.settle("the reading after the reject")
    eventually(lambda: rig.check.closing(time.monotonic()), timeout_s=10, interval_s=0.01,
               message="the closing reading")
    assert rig.rows("SELECT count(*) FROM chain_balances WHERE reason = 'shutdown'") == [(3,)]
