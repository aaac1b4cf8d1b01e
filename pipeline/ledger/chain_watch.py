"""The trading account on chain against the ledger: readings recorded, a mismatch stops trading.

With a chain venue the ledger reads the account's balances (SPL token accounts and native
SOL) at start-up, after commits that moved money and at least every ``recheck_s`` (money
can leave a wallet without any order), and records each reading in
``chain_balances`` next to its own amount. The first reading of each asset sets the
ledger's opening balance for it. A later difference beyond the tolerance means money
moved that the ledger did not book (a duplicate send that landed, a lost fill, a transfer
nobody booked): the ledger turns TRADE_ENABLED off (re-enabling needs the multisig, after
a human has looked) and sets ``pipeline_chain_balance_mismatch``. Once the difference is
explained (a deposit, a withdrawal), the local operator's ``balances.reopen`` makes the next
reading re-open every asset at the chain's amount, audited with who and why.

Every order that signed a transaction is followed by a reading once it is final, a
reject included (a "reject" that landed is exactly what the reading must catch), and a
stopping ledger takes one whenever anything was signed in its run. An order whose outcome
the executor reports unknown gets a *snapshot* at once: a reading recorded (reason
``unknown_outcome``; ``shutdown_in_flight`` for one taken at a stop with orders still
open) but not compared, since the unknown transaction may land at any moment; the
comparison follows at the next quiet moment, as for every reading.

A reading is only comparable while nothing is in flight. A transaction can only leave the
executor after its NEW report is in the reports ring, so a reading is requested when the
ledger has committed every report and holds no open order, and it counts only if the ring's
write sequence is still the same when it arrives; otherwise it is discarded and retried.

The RPC (~80 ms away on mainnet) is read in a thread with its own event loop: the ledger's
commit loop never waits on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from sqlalchemy.exc import OperationalError as SqlOperationalError

from pipeline.config import PipelineConfig
from pipeline.errors import OperationalError
from pipeline.ledger.store import CommitResult, LedgerStore
from pipeline.ring import RingReader
from pipeline.solana.account import trading_account
from pipeline.solana.constants import LAMPORTS_PER_SOL, WRAPPED_SOL_MINT
from pipeline.solana.rpc import Retrier
from pipeline.solana.tokens import associated_token_address, unpack_account

_ACCOUNT_WAIT_S: Final = 3600.0  # a localnet started after the ledger is still found
_PROBE_S: Final = 0.05  # how often to look for a quiet moment while a reading is wanted
_CLOSING_WAIT_S: Final = 3.0  # how long a stopping ledger waits for its closing reading


@dataclasses.dataclass(frozen=True)
class Reading:
    """One reading of the account, or why it failed."""

    balances: dict[str, float]
    error: str = ""
    fatal: bool = False  # the watch has stopped: no reading will come again


class ChainWatch:
    """Reads the account's balances on request, in its own thread (see module doc)."""

    def __init__(self, config: PipelineConfig, native_asset: str,
                 log: logging.Logger) -> None:
        self._config = config
        self._native_asset = native_asset
        self._log = log
        self._requests: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._readings: queue.SimpleQueue[Reading] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="chain-watch", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._requests.put(True)

    def poll(self) -> Reading | None:
        try:
            return self._readings.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        self._requests.put(False)
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the watch must not take the ledger down
            self._log.exception("chain watch stopped", extra={"event": "chain.watch_stopped"})
            self._readings.put(Reading({}, f"chain watch stopped: {exc}", fatal=True))

    async def _main(self) -> None:
        try:
            account = await asyncio.to_thread(trading_account, self._config, _ACCOUNT_WAIT_S)
            owner = Pubkey.from_string(account.owner)
        except OperationalError as exc:
            self._readings.put(Reading({}, str(exc), fatal=True))
            return
        except ValueError:
            self._readings.put(Reading({}, f"executor.solana.owner = {account.owner!r} is not "
                                           "a base58 public key", fatal=True))
            return
        solana = self._config.executor.solana
        retrier = Retrier(solana.rpc_attempts, solana.backoff_s, solana.rpc_timeout_s,
                          self._log)
        token_accounts = {asset: (associated_token_address(owner, Pubkey.from_string(mint)),
                                  decimals) for asset, (mint, decimals) in account.mints.items()}
        # Traded as wrapped SOL: the native lamports are the same asset (see checks.py).
        wrapped = account.mints.get(self._native_asset, ("", 0))[0] == WRAPPED_SOL_MINT
        rpc = AsyncClient(account.rpc_url, commitment=Confirmed, timeout=solana.rpc_timeout_s)
        try:
            while await asyncio.to_thread(self._requests.get):
                try:
                    balances = await self._read(rpc, retrier, owner, token_accounts,
                                                wrapped=wrapped)
                    self._readings.put(Reading(balances))
                except Exception as exc:
                    self._readings.put(Reading({}, f"{type(exc).__name__}: {exc}"))
        finally:
            await rpc.close()

    async def _read(self, rpc: AsyncClient, retrier: Retrier, owner: Pubkey,
                    token_accounts: dict[str, tuple[Pubkey, int]], *,
                    wrapped: bool) -> dict[str, float]:
        balances: dict[str, float] = {}
        for asset, (address, decimals) in token_accounts.items():
            info = await retrier.call("getAccountInfo", functools.partial(
                rpc.get_account_info, address, Confirmed))
            amount = unpack_account(bytes(info.value.data))[2] if info.value is not None else 0
            balances[asset] = amount / 10**decimals
        lamports = await retrier.call("getBalance", lambda: rpc.get_balance(owner, Confirmed))
        native = lamports.value / LAMPORTS_PER_SOL
        held_wrapped = balances.get(self._native_asset, 0.0) if wrapped else 0.0
        balances[self._native_asset] = held_wrapped + native
        return balances


class ChainMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.mismatch = Gauge("pipeline_chain_balance_mismatch",
                              "1 while the last chain reading differs from the ledger",
                              registry=registry)
        self.balance = Gauge("pipeline_chain_balance", "Balance read from the chain",
                             ["asset"], registry=registry)
        self.readings = Counter("pipeline_chain_readings_total",
                                "Chain balance readings by outcome", ["outcome"],
                                registry=registry)
        self.running = Gauge("pipeline_chain_watch_running",
                             "1 while the ledger watches the chain balances, 0 once it "
                             "stopped for good", registry=registry)
        self.last_reading = Gauge("pipeline_chain_last_reading_timestamp_seconds",
                                  "Unix time of the last chain balance reading (the watch's "
                                  "start until the first)", registry=registry)
        self.running.set(1)
        self.last_reading.set(time.time())


class ChainCheck:
    """The ledger's side: when to read, whether a reading counts, what a mismatch does."""

    def __init__(self, watch: ChainWatch, store: LedgerStore, *,
                 reports: Callable[[], RingReader], tolerance: float, interval_s: float,
                 recheck_s: float,
                 on_mismatch: Callable[[str, dict[str, tuple[float, float]]], None],
                 registry: CollectorRegistry, log: logging.Logger) -> None:
        self._watch = watch
        self._store = store
        self._reports = reports
        self._tolerance = tolerance
        self._interval_s = interval_s
        self._recheck_s = recheck_s
        self._last_reading_s = 0.0
        self._on_mismatch = on_mismatch
        self._metrics = ChainMetrics(registry)
        self._log = log
        self._read_assets = store.chain_assets_read()
        self._reason = "startup"  # why the next reading is wanted; "" when none is
        self._asked_at_seq: int | None = None
        self._next_try_s = 0.0  # the interval between readings
        self._next_probe_s = 0.0  # between looks for a quiet moment
        self._closing_deadline_s: float | None = None
        self._reopen: dict[str, str] | None = None  # who asked for a re-open, and why
        self._stopped = False  # the watch cannot read the chain (logged once)
        self._snapshot = ""  # why an uncompared reading is wanted now; "" when none is
        self._asked_snapshot = ""  # the reason of the snapshot on its way, if one is
        self._signed = False  # a transaction was signed in this run
        self.mismatched = False

    def close(self) -> None:
        self._watch.close()

    @property
    def waiting(self) -> bool:
        """A reading was requested and has not arrived."""
        return self._asked_at_seq is not None

    @property
    def wants_reading(self) -> bool:
        """A reading is due or on its way: the ledger should not sleep long."""
        return not self._stopped and (bool(self._reason) or self.waiting)

    def committed(self, result: CommitResult) -> None:
        """A commit happened: read again if it moved money or ended a signed order;
        take a snapshot at once if an outcome became unknown."""
        if result.balances_changed or result.settled_signed:
            self._reason = self._reason or ("fills" if result.balances_changed else "settled")
        if result.unknown_outcomes:
            self._snapshot = "unknown_outcome"
        self._signed = self._signed or bool(result.signed or result.settled_signed)

    def step(self, now_s: float) -> None:
        try:
            self._step(now_s)
        except SqlOperationalError as exc:  # disk full, I/O error: the ledger stalls anyway
            self._metrics.readings.labels("error").inc()
            self._log.warning("chain check could not use the database: %s", exc,
                              extra={"event": "chain.database_error"})
            self._reason = self._reason or "retry"  # a missed reading or disable is redone
            self._next_try_s = now_s + self._interval_s

    def _step(self, now_s: float) -> None:
        reading = self._watch.poll()
        if reading is not None:
            self._settle(reading, now_s)
        if self._stopped:
            return
        if not self._reason and now_s >= self._last_reading_s + self._recheck_s:
            self._reason = "periodic"
        if self._asked_at_seq is None and self._snapshot:
            self._asked_snapshot, self._snapshot = self._snapshot, ""
            self._asked_at_seq = self._reports().write_seq
            self._watch.request()
            return
        if self._asked_at_seq is not None or not self._reason \
                or now_s < max(self._next_try_s, self._next_probe_s):
            return
        self._next_probe_s = now_s + _PROBE_S
        reports = self._reports()
        if reports.available() or self._store.open_orders():
            return  # something may be landing right now: the reading would not compare
        self._asked_at_seq = reports.write_seq
        self._watch.request()

    def reopen(self, operator: str, reason: str) -> None:
        """The next comparable reading re-opens every asset at the chain's amount."""
        self._reopen = {"operator": operator, "reason": reason}
        self._reason = "reopen"
        self._next_try_s = 0.0

    def closing(self, now_s: float) -> bool:
        """Called while the ledger drains (the executor has stopped): take a closing
        reading if money moved since the last one; True when done or given up."""
        if self._closing_deadline_s is None:
            self._closing_deadline_s = now_s + _CLOSING_WAIT_S
            self._next_try_s = 0.0
            if self._signed or (self._reason and self._reason != "startup"):
                self._reason = "shutdown"
        if not self._reason or self._stopped:
            return True
        if now_s > self._closing_deadline_s - _CLOSING_WAIT_S / 2 and not self.waiting \
                and self._store.open_orders() and self._reason == "shutdown":
            # Orders still open (unknown outcomes) keep the books from being compared:
            # record what the chain holds as the pipeline stops, for whoever settles them.
            self._reason = "shutdown_in_flight"
            self._snapshot = "shutdown_in_flight"
        if self._reason == "shutdown_in_flight" and not self._snapshot and not self.waiting:
            return True
        if now_s > self._closing_deadline_s:
            self._log.warning("no closing chain reading (nothing quiet or no answer)",
                              extra={"event": "chain.no_closing_reading"})
            return True
        self.step(now_s)
        return not self._reason

    def _settle(self, reading: Reading, now_s: float) -> None:
        asked_at, self._asked_at_seq = self._asked_at_seq, None
        snapshot, self._asked_snapshot = self._asked_snapshot, ""
        if reading.fatal:
            self._stopped = True
            self._metrics.running.set(0)
            self._metrics.readings.labels("error").inc()
            self._log.error("chain balances cannot be read; the ledger stops watching the "
                            "chain: %s", reading.error, extra={"event": "chain.watch_stopped"})
            return
        if reading.error:
            self._metrics.readings.labels("error").inc()
            self._log.warning("chain balances not read: %s", reading.error,
                              extra={"event": "chain.read_failed"})
            return
        self._metrics.last_reading.set(time.time())
        if snapshot:
            self._metrics.readings.labels("snapshot").inc()
            self._store.record_chain_balances(reading.balances, snapshot)
            self._log.info("chain snapshot (%s): %s", snapshot, reading.balances,
                           extra={"event": "chain.snapshot", "reason": snapshot})
            return
        if asked_at != self._reports().write_seq:
            self._metrics.readings.labels("stale").inc()
            return  # reports arrived meanwhile: ask again at the next quiet moment
        self._metrics.readings.labels("compared").inc()
        # The first reading of an asset opens its account: the ledger takes the chain's
        # amount (an audited "opening balance" row). Trading may have started before the
        # first quiet moment, so this does not wait for "no fills yet"; from then on the
        # ledger's bookings must explain every change.
        opening = {asset: amount for asset, amount in reading.balances.items()
                   if asset not in self._read_assets or self._reopen is not None}
        self._store.record_chain_balances(reading.balances, self._reason, opening=opening,
                                          reopened_by=self._reopen)
        self._reopen = None
        self._read_assets |= set(reading.balances)
        self._reason = ""
        self._next_try_s = now_s + self._interval_s
        self._last_reading_s = now_s
        ledger = self._store.balances()
        differences = {asset: (amount, ledger.get(asset, 0.0))
                       for asset, amount in reading.balances.items()
                       if abs(amount - ledger.get(asset, 0.0)) > self._tolerance}
        for asset, amount in reading.balances.items():
            self._metrics.balance.labels(asset).set(amount)
        self._metrics.mismatch.set(1 if differences else 0)
        if differences and not self.mismatched:
            self._on_mismatch("; ".join(f"{asset}: chain {chain} vs ledger {booked}"
                                        for asset, (chain, booked) in differences.items()),
                              differences)
        self.mismatched = bool(differences)
