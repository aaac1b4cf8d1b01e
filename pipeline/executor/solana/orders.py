"""One order's life on Solana: build, check, sign, report NEW, land, and learn its fate.

Runs as a coroutine on the venue's event loop. The NEW report (signature in ``venue_ref``)
is handed to the executor and the transaction stays in the process until the executor has
put that report in the reports ring (``released``): after a crash the ledger knows the
signature of anything that may have been sent.

Once a transaction is signed, the order ends only on a fact read from the chain
(:mod:`pipeline.executor.solana.fate`): landed, failed on chain, or expired (every one of
its transactions). Exceptions, timeouts, 429s and lost answers after the send change
nothing but the order's *unknown* flag: it stays open, is polled with bounded back-off, and
is never signed again while any of its transactions can still land.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from pipeline.executor.solana.checks import (
    RefusedError,
    check_deltas,
    check_message,
    message_fee,
)
from pipeline.executor.solana.config import SolanaConfig
from pipeline.executor.solana.fate import Attempt, Expired, Fate, Outcome, Pending
from pipeline.executor.solana.simulate import simulated_deltas
from pipeline.executor.solana.swapapi import Built, SwapApi
from pipeline.executor.solana.wallet import Snapshot, WalletGuard, read_wallet
from pipeline.solana.account import Market
from pipeline.solana.rpc import Retrier

_REMEMBERED_SIGNATURES: Final = 100_000  # far more than can be in flight in one blockhash window




@dataclasses.dataclass(frozen=True)
class Request:
    """What the order asks for, in base units of the mints."""

    input_mint: str
    output_mint: str
    amount_in: int
    max_in: int
    min_out: int


class LimitError(RefusedError):
    """The swap is honest but worse than the order's limit price."""


class Tracker:
    """An order's unknown episodes, told to the venue (report, metrics, log) once each."""

    def __init__(self, unknown_after_s: float,
                 on_unknown: Callable[[str, str], None],
                 on_resolved: Callable[[float], None]) -> None:
        self._unknown_after_s = unknown_after_s
        self._on_unknown = on_unknown
        self._on_resolved = on_resolved
        self._since: float | None = None  # first doubt of the current episode
        self.reported_at: float | None = None  # when the order was reported unknown

    def doubt(self, signature: str, cause: str) -> None:
        """The chain did not answer conclusively; unknown once this lasts long enough."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self.reported_at is None and now - self._since >= self._unknown_after_s:
            self.reported_at = now
            self._on_unknown(signature, cause)

    def clear(self) -> None:
        """A conclusive answer (the order is still open but its state is known)."""
        if self.reported_at is None:
            self._since = None

    def resolved(self) -> None:
        if self.reported_at is not None:
            self._on_resolved(time.monotonic() - self.reported_at)


class OrderRunner:
    """Runs orders against one RPC and one swap API with one taker key."""

    def __init__(self, config: SolanaConfig, rpc: AsyncClient, api: SwapApi,
                 keypair: Keypair, retrier: Retrier, *, fate: Fate,
                 log: logging.Logger) -> None:
        self._config = config
        self._rpc = rpc
        self._api = api
        self._keypair = keypair
        self._taker = keypair.pubkey()
        self._retrier = retrier
        self._fate = fate
        self._guard = WalletGuard()
        # One order of the wallet signed and unsettled at a time: then every landed swap
        # can be measured from the wallet alone when the RPC will not serve it (two swaps
        # landing together could not be told apart), and nothing new is signed while a
        # landed order is still being measured. Per symbol the strategy waits anyway.
        self._one_at_a_time = asyncio.Lock()
        # Signatures this process has produced: a venue that hands two orders the same
        # message would get one swap on chain booked as two fills.
        self._signed: collections.OrderedDict[Signature, None] = collections.OrderedDict()
        self._executing: set[asyncio.Task[None]] = set()
        self._log = log

    async def run(self, market: Market, request: Request,
                  report_new: Callable[[Attempt], Awaitable[None]],
                  tracker: Tracker) -> Outcome:
        """Build, check, sign, report NEW (await release), land; a new build only once
        every earlier transaction of the order has expired."""
        async with self._one_at_a_time:
            return await self._run(market, request, report_new, tracker)

    async def reconcile(self, attempts: list[Attempt], market: Market,
                        tracker: Tracker) -> Outcome | None:
        """Settle transactions signed before a restart (see :meth:`settle`)."""
        async with self._one_at_a_time:
            generation = self._guard.signed()  # nothing else signs while we hold the wallet
            for attempt in attempts:
                attempt.generation = generation
            self._guard.opened()
            try:
                return await self.settle(attempts, market, tracker)
            finally:
                self._guard.settled(max(a.landed_slot for a in attempts))

    async def _run(self, market: Market, request: Request,
                   report_new: Callable[[Attempt], Awaitable[None]],
                   tracker: Tracker) -> Outcome:
        attempts: list[Attempt] = []
        for _build in range(self._config.max_builds):
            built = await self._api.build(request.input_mint, request.output_mint,
                                          request.amount_in, str(self._taker))
            try:
                signed, before = await self._check_and_sign(built, request, market)
            except LimitError as exc:
                return Outcome(refused=str(exc), limit=True)
            except RefusedError as exc:
                return Outcome(refused=str(exc))
            attempt = Attempt(signed.signatures[0], signed, built.last_valid_height,
                              before=before, fee=message_fee(signed),
                              generation=self._guard.signed())
            attempts.append(attempt)
            self._guard.opened()
            try:
                await report_new(attempt)
                outcome = await self.settle(attempts, market, tracker, resend=signed,
                                            request_id=built.request_id)
            finally:
                self._guard.settled(attempts[-1].landed_slot)
            if outcome is not None:
                return outcome
        return Outcome(failed=f"expired {len(attempts)} times without landing")

    async def settle(self, attempts: list[Attempt], market: Market, tracker: Tracker, *,
                     resend: VersionedTransaction | None = None,
                     request_id: str = "") -> Outcome | None:
        """Send ``resend`` (if any) until the chain decides; the outcome, or None once every
        attempt has expired. Never raises for a network problem: those only make the
        order unknown (``tracker``) and slow the polling down (capped back-off)."""
        if resend is not None and self._config.landing == "execute":
            self._execute_once(resend, request_id)
        resend_raw = bytes(resend) if resend is not None and self._config.landing == "self" \
            else None
        loop = asyncio.get_running_loop()
        last_send = -1e9
        delay = self._config.confirm_poll_s
        sending: asyncio.Task[bool] | None = None
        try:
            while True:
                if sending is not None and sending.done() and not sending.result():
                    # Refused or lost (429, reset): try again soon, not a whole interval on.
                    last_send = min(last_send, loop.time() - self._config.resend_interval_s
                                    + self._config.backoff_s)
                    sending = None
                if resend_raw is not None and (sending is None or sending.done()) and \
                        loop.time() - last_send >= self._config.resend_interval_s and \
                        not attempts[-1].expired:
                    # In the background: a send whose answer hangs must not stop the polls
                    # that would see it land.
                    last_send = loop.time()
                    sending = loop.create_task(self._send(
                        resend_raw, str(attempts[-1].signature), tracker))
                outcome = await self._poll(attempts, market, tracker, delay)
                if isinstance(outcome, float):
                    delay = outcome
                    continue
                return outcome
        finally:
            if sending is not None:
                sending.cancel()

    async def _poll(self, attempts: list[Attempt], market: Market, tracker: Tracker,
                    delay: float) -> Outcome | float | None:
        """One look at the chain: the outcome, None once expired, or the next poll delay
        (after sleeping the current one)."""
        try:
            fate = await self._fate.observe(attempts, market, self._guard)
        except Exception as exc:  # an RPC that failed us: unknown, never rejected
            tracker.doubt(str(attempts[-1].signature), f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay)
            return min(delay * 2, self._config.poll_max_s)
        if isinstance(fate, Outcome):
            return fate
        if isinstance(fate, Expired):
            return None
        if isinstance(fate, Pending):
            tracker.doubt(fate.signature, fate.cause)
            await asyncio.sleep(delay)
            return min(delay * 2, self._config.poll_max_s)
        tracker.clear()  # open: no status yet, blockhash still valid
        await asyncio.sleep(self._config.confirm_poll_s)
        return self._config.confirm_poll_s

    async def _send(self, raw: bytes, signature: str, tracker: Tracker) -> bool:
        """Send the signed bytes; True if the RPC took them. Whatever the answer, the chain
        decides (a send whose answer was lost may well have landed)."""
        opts = TxOpts(skip_preflight=True, max_retries=0, preflight_commitment=Confirmed)
        try:
            await asyncio.wait_for(self._rpc.send_raw_transaction(raw, opts),
                                   self._config.rpc_timeout_s)
        except BaseException as exc:
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise  # cancellation: the venue is stopping
            tracker.doubt(signature, f"send: {type(exc).__name__}: {exc}")
            return False
        return True

    async def _check_and_sign(self, built: Built, request: Request, market: Market
                              ) -> tuple[VersionedTransaction, Snapshot | None]:
        check_message(built.tx, self._taker, self._config.allowed_programs)
        mints = (market.base_mint, market.quote_mint)
        # The wallet before signing, read alongside the simulation: the fill of a landed
        # transaction the RPC will not serve is measured against it.
        deltas, before = await asyncio.gather(
            simulated_deltas(self._rpc, self._retrier, built.tx, self._taker,
                             (request.input_mint, request.output_mint)),
            self._quiet_snapshot(mints))
        # The transaction must do what the venue quoted (a lying venue is refused outright),
        # and the quote must satisfy the order's limit (else the order is not marketable).
        check_deltas(deltas, input_mint=request.input_mint,
                     output_mint=request.output_mint, max_in=min(request.max_in,
                                                                 built.in_amount),
                     min_out=built.min_out, max_fee_lamports=self._config.max_fee_lamports)
        if deltas.swapped(request.output_mint) < request.min_out:
            raise LimitError(f"the swap gives {deltas.swapped(request.output_mint)}, "
                             f"the limit price needs {request.min_out}")
        signed = sign(built.tx, self._keypair)
        signature = signed.signatures[0]
        if signature in self._signed:
            raise RefusedError(f"the venue returned a transaction already signed ({signature})"
                               " for another order")
        self._signed[signature] = None
        if len(self._signed) > _REMEMBERED_SIGNATURES:
            self._signed.popitem(last=False)
        return signed, before

    async def _quiet_snapshot(self, mints: tuple[str, str]) -> Snapshot | None:
        """The wallet now, if it can measure a fill later (see wallet.py), else None."""
        try:
            snapshot = await read_wallet(self._rpc, self._retrier, self._taker, mints)
        except Exception as exc:  # only a fallback is lost; the order goes on
            self._log.info("wallet not read before signing: %s", exc,
                           extra={"event": "solana.wallet_unread"})
            return None
        return snapshot if self._guard.quiet(snapshot) else None

    def _execute_once(self, signed: VersionedTransaction, request_id: str) -> None:
        """POST /execute in the background; its answer is logged, never trusted: the order
        settles by signature status whatever it says (a "Failed" may still land)."""
        task = asyncio.get_running_loop().create_task(self._execute(signed, request_id))
        self._executing.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._executing.discard)

    async def _execute(self, signed: VersionedTransaction, request_id: str) -> None:
        signature = str(signed.signatures[0])
        try:
            answer = await self._api.execute(signed, request_id)
        except Exception as exc:
            self._log.warning("/execute failed: %s", exc, extra={
                "event": "solana.execute_failed", "signature": signature})
            return
        self._log.info("/execute answered %s %s", answer.get("status"), answer.get("code"),
                       extra={"event": "solana.execute", "signature": signature,
                              "status": answer.get("status"), "code": answer.get("code"),
                              "error": answer.get("error")})


def sign(tx: VersionedTransaction, keypair: Keypair) -> VersionedTransaction:
    """Add the taker's signature to a partially signed v0 transaction, keeping the others."""
    ours = keypair.sign_message(to_bytes_versioned(tx.message))
    keys = list(tx.message.account_keys)
    signatures = [ours if keys[i] == keypair.pubkey() else s
                  for i, s in enumerate(tx.signatures)]
    return VersionedTransaction.populate(tx.message, signatures)
