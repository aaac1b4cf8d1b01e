"""The Solana venue behind the executor: the tick path hands orders over and never waits.

``submit`` validates and queues orders for an asyncio loop in a worker thread, which does
all network work (quote, simulate, send, confirm); ``poll`` collects its reports.
A NEW report carrying the signature comes first; the signed transaction stays in the
process until the executor confirms, on its next ``poll(reports_flushed=True)``, that the
report is in the reports ring.

``cancel_all`` withdraws the orders not signed yet (they never reached the chain); a signed
order may still land, so it stays pending until its fate is known.

After a restart the worker first waits for the ledger to commit every report still in the
ring, then reads the orders left NEW (with their signatures) from the ledger's read API
(:func:`pipeline.ledger.inflight.signed_in_flight`, passed in as ``ledger_in_flight``): a
re-submitted order is reconciled by the status of every signature the ledger holds for it,
and ends unfilled only once the chain is past all of their ``lastValidBlockHeight``s; it is
never signed again.

An order whose fate the RPC leaves open (errors, lost answers, a landed transaction it
does not serve) is reported again as NEW with ``ReportDetail.OUTCOME_UNKNOWN`` after
``unknown_after_s``: the ledger reads the chain at once and the order stays open, so the
strategy sends nothing more for its symbol. ``pipeline_solana_oldest_unknown_seconds``
pages past ``unknown_page_after_s``.

Chain balances are the ledger's business (``pipeline.ledger.chain_watch``): it reads them
after its commits and turns trading off through the kill switch on a mismatch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.signature import Signature

from pipeline.executor.solana.config import SolanaConfig
from pipeline.executor.solana.fate import Attempt, Fate, Outcome
from pipeline.executor.solana.orders import OrderRunner, Request, Tracker
from pipeline.executor.solana.swapapi import SwapApi, SwapRejectedError
from pipeline.executor.solana.wallet import Snapshot
from pipeline.executor.venue import NO_REPORTS, Venue, reports_from_intents
from pipeline.ledger.inflight import Signed
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason, ReportDetail
from pipeline.solana.account import Market
from pipeline.solana.constants import LAMPORTS_PER_SOL
from pipeline.solana.rpc import Retrier

_BUY: Final = 1
_CLOSE_WAIT_S: Final = 30.0  # for the worker to cancel its tasks and close its clients
_CANCEL_WAIT_S: Final = 5.0  # for the worker's loop to withdraw unsigned orders


class SolanaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.retries = Counter("pipeline_solana_rpc_retries_total",
                               "Temporary RPC / swap API failures retried", ["call"],
                               registry=registry)
        self.refused = Counter("pipeline_solana_refused_total",
                               "Transactions refused by the pre-signing checks",
                               registry=registry)
        self.unknown = Counter("pipeline_solana_unknown_outcomes_total",
                               "Orders whose fate the RPC left open past unknown_after_s",
                               ["cause"], registry=registry)
        self.unknown_open = Gauge("pipeline_solana_unknown_orders",
                                  "Orders open with an unknown outcome", registry=registry)
        self.oldest_unknown = Gauge("pipeline_solana_oldest_unknown_seconds",
                                    "Age of the oldest order with an unknown outcome",
                                    registry=registry)
        self.page_after = Gauge("pipeline_solana_unknown_page_after_seconds",
                                "executor.solana.unknown_page_after_s: the page threshold",
                                registry=registry)
        self.resolve_seconds = Counter("pipeline_solana_unknown_resolved_seconds_total",
                                       "Time unknown orders took to resolve", registry=registry)


class SolanaVenue(Venue):
    """A :class:`~pipeline.executor.venue.Venue` that swaps on Solana (see module doc)."""

    def __init__(self, config: SolanaConfig, *, rpc_url: str, swap_url: str, api_key: str,
                 keypair: Keypair, markets: dict[int, Market],
                 ledger_in_flight: Callable[[], dict[int, list[Signed]]], log: logging.Logger,
                 registry: CollectorRegistry) -> None:
        self._config = config
        self._markets = markets
        self._log = log
        self._metrics = SolanaMetrics(registry)
        self._keypair = keypair
        self._results: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._pending: dict[int, np.ndarray] = {}  # client_order_id -> the intent (1 row)
        # NEW reports handed out, not yet flushed: put by the loop thread, taken by poll().
        self._unreleased: queue.SimpleQueue[asyncio.Event] = queue.SimpleQueue()
        self._to_release: list[asyncio.Event] = []
        # The loop thread's own view: each order's task, and the orders already signed.
        self._tasks: dict[int, tuple[asyncio.Task[None], np.ndarray, int]] = {}
        self._signed: set[int] = set()
        self._closed = False
        self._last_price: dict[int, float] = {}
        self._unknown: dict[int, float] = {}  # client_order_id -> monotonic time reported
        self._metrics.page_after.set(config.unknown_page_after_s)
        self._metrics.oldest_unknown.set_function(self._oldest_unknown_s)
        self._metrics.unknown_open.set_function(lambda: len(self._unknown))
        # Read before the first intent arrives (it blocks until the ledger has committed
        # every report): the executor must hand these orders back to us even while trading
        # is disabled, or a transaction that lands would be booked as a reject.
        self._in_flight = dict(ledger_in_flight())
        self._loop = asyncio.new_event_loop()
        self._rpc_url, self._swap_url, self._api_key = rpc_url, swap_url, api_key
        self._thread = threading.Thread(target=self._serve, name="solana-venue", daemon=True)
        self._thread.start()

    # -- the executor's side ----------------------------------------------------------------
    def submit(self, intents: np.ndarray, send_ns: int) -> np.ndarray:
        rejects = []
        for i in range(len(intents)):
            intent = intents[i : i + 1].copy()
            coid = int(intent["client_order_id"][0])
            reason = self._invalid(intent)
            if reason is not None:
                rejects.append(self._final(intent, send_ns, OrderStatus.REJECTED, reason=reason))
                continue
            self._pending[coid] = intent
            self._loop.call_soon_threadsafe(self._start, intent, send_ns)
        return np.concatenate(rejects) if rejects else np.empty(0, dtype=REPORT_DTYPE)

    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """Remember the last price per symbol (to size buys); reports come from ``poll``."""
        for symbol_id, price in zip(ticks["symbol_id"][-64:].tolist(),
                                    ticks["price"][-64:].tolist(), strict=True):
            self._last_price[symbol_id] = price
        return NO_REPORTS

    def poll(self, reports_flushed: bool) -> np.ndarray:
        """Reports the worker produced; releases sends whose NEW report is now in the ring."""
        if reports_flushed and self._to_release:
            for event in self._to_release:
                self._loop.call_soon_threadsafe(event.set)
            self._to_release = []
        while True:
            try:
                self._to_release.append(self._unreleased.get_nowait())
            except queue.Empty:
                break
        out = []
        while True:
            try:
                report = self._results.get_nowait()
            except queue.Empty:
                break
            out.append(report)
            if report["status"][0] != OrderStatus.NEW:
                self._pending.pop(int(report["client_order_id"][0]), None)
        return np.concatenate(out) if out else np.empty(0, dtype=REPORT_DTYPE)

    def cancel_all(self, reason: RejectReason) -> np.ndarray:
        """Withdraw the orders not signed yet, then hand out every report ready (their
        CANCELLED ones among them). A signed order may still land: it stays pending.

        The loop thread decides (it alone signs, so no order is signed while it looks);
        if it does not answer within ``_CANCEL_WAIT_S`` the reports come through ``poll``."""
        if not self._pending or self._closed or not self._thread.is_alive():
            return NO_REPORTS  # (a dead worker's loop is closed: nothing can be withdrawn)
        future = asyncio.run_coroutine_threadsafe(self._withdraw_unsigned(reason), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            future.result(timeout=_CANCEL_WAIT_S)
        return self.poll(reports_flushed=False)

    async def _withdraw_unsigned(self, reason: RejectReason) -> None:
        """On the worker's loop: cancel the tasks of orders with nothing signed, and put a
        CANCELLED report for each one that really stopped (not one that just finished)."""
        withdrawn = [(coid, *entry) for coid, entry in self._tasks.items()
                     if coid not in self._signed and coid not in self._in_flight
                     and not entry[0].done()]
        for _coid, task, _intent, _send_ns in withdrawn:
            task.cancel()
        await asyncio.gather(*(task for _, task, _, _ in withdrawn), return_exceptions=True)
        for _coid, task, intent, send_ns in withdrawn:
            if task.cancelled():
                self._results.put(self._final(intent, send_ns, OrderStatus.CANCELLED,
                                              reason=reason))

    def _oldest_unknown_s(self) -> float:
        reported = list(self._unknown.values())  # the venue's loop thread writes the dict
        return time.monotonic() - min(reported) if reported else 0.0

    def reconciles(self, client_order_id: int) -> bool:
        """True for an order signed before a restart: only its signature may settle it."""
        return client_order_id in self._in_flight

    def close(self) -> None:
        """Stop the worker: cancel its tasks, close its HTTP clients, close the loop.

        Orders still in flight are abandoned here; their signatures are in the ledger (NEW
        reports) and the next start reconciles them. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # the worker already ended, its loop closed
            self._loop.call_soon_threadsafe(self._begin_shutdown)
        self._thread.join(timeout=_CLOSE_WAIT_S)
        if self._thread.is_alive():  # a loaded host; it closes its loop when it ends
            self._log.warning("the Solana venue's worker did not stop within %.0f s",
                              _CLOSE_WAIT_S, extra={"event": "solana.close_slow"})

    def _begin_shutdown(self) -> None:
        """On the worker's loop: stop it once its tasks and clients are closed."""
        self._loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._api.close()
        await self._rpc.close()
        self._loop.stop()

    def _invalid(self, intent: np.ndarray) -> RejectReason | None:
        coid = int(intent["client_order_id"][0])
        if coid in self._in_flight:
            return RejectReason.INVALID_ORDER if coid in self._pending else None
        symbol = int(intent["symbol_id"][0])
        quantity, limit = float(intent["quantity"][0]), float(intent["limit_price"][0])
        if symbol not in self._markets or not quantity > 0 or not limit > 0 \
                or int(intent["client_order_id"][0]) in self._pending:
            return RejectReason.INVALID_ORDER
        if symbol not in self._last_price:
            return RejectReason.NO_MARKET_PRICE
        return None

    def _final(self, intent: np.ndarray, send_ns: int, status: OrderStatus, *,
               reason: RejectReason = RejectReason.NONE, signature: str = "",
               base: float = 0.0, quote: float = 0.0, last_valid_height: int = 0,
               network_fee_lamports: int = 0,
               detail: ReportDetail = ReportDetail.NONE) -> np.ndarray:
        report = reports_from_intents(intent, send_ns, status, reason)
        report["venue_ts_ns"] = time.time_ns()
        report["detail"] = detail
        report["venue_ref"] = signature.encode()
        report["last_valid_height"] = last_valid_height
        report["network_fee"] = network_fee_lamports / LAMPORTS_PER_SOL
        if base > 0:
            report["filled_qty"] = base
            report["avg_price"] = quote / base
        return report

    # -- the worker's side ------------------------------------------------------------------
    def _work(self) -> None:
        asyncio.set_event_loop(self._loop)
        retrier = Retrier(self._config.rpc_attempts, self._config.backoff_s,
                          self._config.rpc_timeout_s, self._log,
                          lambda call: self._metrics.retries.labels(call).inc())
        self._rpc = AsyncClient(self._rpc_url, commitment=Confirmed,
                                timeout=self._config.rpc_timeout_s)
        self._api = SwapApi(self._swap_url, self._api_key, self._config, retrier)
        fate = Fate(self._rpc, retrier, self._keypair.pubkey(),
                    commitment=self._config.commitment,
                    details_wait_s=self._config.details_wait_s)
        self._runner = OrderRunner(self._config, self._rpc, self._api, self._keypair, retrier,
                                   fate=fate, log=self._log)
        if self._in_flight:
            self._log.warning("reconciling %d in-flight orders by signature",
                              len(self._in_flight), extra={"event": "solana.recover",
                                                           "orders": len(self._in_flight)})
        self._loop.run_forever()

    def _serve(self) -> None:
        """The worker thread owns its loop: it closes it when it ends, however late."""
        try:
            self._work()
        finally:
            self._loop.close()

    def _start(self, intent: np.ndarray, send_ns: int) -> None:
        coid = int(intent["client_order_id"][0])
        task = self._loop.create_task(self._order(intent, send_ns))
        self._tasks[coid] = (task, intent, send_ns)
        task.add_done_callback(lambda _task: self._forget(coid))

    def _forget(self, coid: int) -> None:
        self._tasks.pop(coid, None)
        self._signed.discard(coid)

    async def _order(self, intent: np.ndarray, send_ns: int) -> None:
        coid = int(intent["client_order_id"][0])
        market = self._markets[int(intent["symbol_id"][0])]
        tracker = Tracker(self._config.unknown_after_s,
                          lambda sig, cause: self._report_unknown(intent, send_ns, sig, cause),
                          lambda waited_s: self._resolved(coid, waited_s))
        try:
            if coid in self._in_flight:
                # An intent from before the crash: settled by its signatures only. Once
                # none of them can land, the stale order ends unfilled rather than being
                # traded again at today's price.
                outcome = await self._reconcile(self._in_flight[coid], market, tracker)
                self._in_flight.pop(coid, None)
            else:
                outcome = await self._runner.run(
                    market, self._request(intent, market),
                    lambda attempt: self._report_new(intent, send_ns, attempt), tracker)
        except SwapRejectedError as exc:
            outcome = Outcome(failed=str(exc))
        except Exception as exc:
            # Only building and checking can raise (settling never does), so nothing of
            # this attempt was signed and every earlier one has expired: a true reject.
            self._log.warning("order %d not sent: %s: %s", coid, type(exc).__name__, exc,
                              extra={"event": "solana.order_error"})
            outcome = Outcome(failed=f"{type(exc).__name__}: {exc}")
        tracker.resolved()
        self._results.put(self._outcome_report(intent, send_ns, outcome))

    async def _reconcile(self, signed: list[Signed], market: Market,
                         tracker: Tracker) -> Outcome:
        """The outcome of the transactions signed before a restart (see fate.py)."""
        attempts = [Attempt(Signature.from_string(s.signature), None, s.last_valid_height,
                            before=_snapshot(s, market), fee=s.message_fee) for s in signed]
        outcome = await self._runner.reconcile(attempts, market, tracker)
        return outcome or Outcome(failed="signed before a restart, expired without landing")

    def _report_unknown(self, intent: np.ndarray, send_ns: int, signature: str,
                        cause: str) -> None:
        coid = int(intent["client_order_id"][0])
        self._unknown[coid] = time.monotonic()
        kind = "send" if cause.startswith("send:") else \
            "landed_pending" if cause.startswith("landed") else "rpc_error"
        self._metrics.unknown.labels(kind).inc()
        self._log.warning("order %d outcome unknown: %s", coid, cause, extra={
            "event": "solana.outcome_unknown", "client_order_id": coid,
            "signature": signature, "cause": cause})
        self._results.put(self._final(intent, send_ns, OrderStatus.NEW, signature=signature,
                                      detail=ReportDetail.OUTCOME_UNKNOWN))

    def _resolved(self, coid: int, waited_s: float) -> None:
        self._unknown.pop(coid, None)
        self._metrics.resolve_seconds.inc(waited_s)
        self._log.info("order %d outcome known after %.2f s", coid, waited_s, extra={
            "event": "solana.outcome_resolved", "client_order_id": coid,
            "unknown_s": round(waited_s, 3)})

    async def _report_new(self, intent: np.ndarray, send_ns: int, attempt: Attempt) -> None:
        released = asyncio.Event()
        signature = str(attempt.signature)
        self._signed.add(int(intent["client_order_id"][0]))  # from now on it may land
        self._log.info("order signed", extra={
            "event": "solana.signed", "client_order_id": int(intent["client_order_id"][0]),
            "signature": signature, "last_valid_block_height": attempt.last_valid_height})
        report = self._final(intent, send_ns, OrderStatus.NEW, signature=signature,
                             last_valid_height=attempt.last_valid_height)
        report["message_fee"] = attempt.fee
        if attempt.before is not None:
            market = self._markets[int(intent["symbol_id"][0])]
            report["wallet_slot"] = attempt.before.slot
            report["wallet_lamports"] = attempt.before.lamports
            report["wallet_base"] = attempt.before.tokens.get(market.base_mint, 0)
            report["wallet_quote"] = attempt.before.tokens.get(market.quote_mint, 0)
        # Report first, then its event: poll() takes events before reports, so an event it
        # takes always has its report among the ones it hands out in the same call.
        self._results.put(report)
        self._unreleased.put(released)
        await released.wait()

    def _request(self, intent: np.ndarray, market: Market) -> Request:
        quantity, limit = float(intent["quantity"][0]), float(intent["limit_price"][0])
        base_unit, quote_unit = 10**market.base_decimals, 10**market.quote_decimals
        if int(intent["side"][0]) == _BUY:
            price = self._last_price.get(int(intent["symbol_id"][0]), limit)
            spend = round(quantity * min(price, limit) * quote_unit)
            return Request(market.quote_mint, market.base_mint, spend, spend,
                           int(spend / quote_unit / limit * base_unit))
        amount = round(quantity * base_unit)
        return Request(market.base_mint, market.quote_mint, amount, amount,
                       int(quantity * limit * quote_unit))

    def _outcome_report(self, intent: np.ndarray, send_ns: int, outcome: Outcome) -> np.ndarray:
        if outcome.filled_base > 0:
            return self._final(intent, send_ns, OrderStatus.FILLED, signature=outcome.signature,
                               base=outcome.filled_base, quote=outcome.filled_quote,
                               network_fee_lamports=outcome.network_fee,
                               detail=outcome.source)
        if outcome.refused:
            self._metrics.refused.inc()
            self._log.warning("refused to sign: %s", outcome.refused,
                              extra={"event": "solana.refused"})
        reason = RejectReason.LIMIT_NOT_MARKETABLE if outcome.limit else RejectReason.VENUE_ERROR
        if outcome.failed:
            self._log.warning("order failed: %s", outcome.failed,
                              extra={"event": "solana.failed", "signature": outcome.signature})
        return self._final(intent, send_ns, OrderStatus.REJECTED, reason=reason,
                           signature=outcome.signature,
                           network_fee_lamports=outcome.network_fee, detail=outcome.source)


def _snapshot(signed: Signed, market: Market) -> Snapshot | None:
    """The wallet before a transaction signed before the restart, as its NEW report kept it."""
    slot, lamports, base, quote = signed.wallet
    if not slot:
        return None
    return Snapshot(slot, lamports, {market.base_mint: base, market.quote_mint: quote})
