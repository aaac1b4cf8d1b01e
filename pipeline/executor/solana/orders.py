"""One order's life on Solana: build, check, sign once, report, land, confirm, report.

Runs as a coroutine on the venue's event loop. The NEW report (signature in ``venue_ref``)
is handed to the executor and the transaction stays in the process until the executor has
put that report in the reports ring (``released``): after a crash the ledger knows the
signature of anything that may have been sent. The same signed bytes are re-sent every
``resend_interval_s`` until the signature has a status or the chain passes the
transaction's ``lastValidBlockHeight``; only then may a new transaction be built.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
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
    deltas_from,
    taker_deltas,
)
from pipeline.executor.solana.config import SolanaConfig
from pipeline.executor.solana.rpc import Retrier, is_temporary
from pipeline.executor.solana.swapapi import Built, SwapApi

_REMEMBERED_SIGNATURES: Final = 100_000  # far more than can be in flight in one blockhash window
_LATE_STATUS_LOOKS: Final = 3  # polls for a status that trails the block height


@dataclasses.dataclass(frozen=True)
class Market:
    """A symbol's two mints and their decimals."""

    base_mint: str
    base_decimals: int
    quote_mint: str
    quote_decimals: int


@dataclasses.dataclass(frozen=True)
class Request:
    """What the order asks for, in base units of the mints."""

    input_mint: str
    output_mint: str
    amount_in: int
    max_in: int
    min_out: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an order ended: a fill (base and quote amounts) or a reason it did not."""

    filled_base: float = 0.0
    filled_quote: float = 0.0
    refused: str = ""  # the checks refused to sign
    failed: str = ""  # the venue or the chain failed the order
    limit: bool = False  # refused because the price was beyond the limit
    signature: str = ""
    network_fee: int = 0  # lamports the landed transaction cost the taker beyond the swap


class LimitError(RefusedError):
    """The swap is honest but worse than the order's limit price."""


class OrderRunner:
    """Runs orders against one RPC and one swap API with one taker key."""

    def __init__(self, config: SolanaConfig, rpc: AsyncClient, api: SwapApi,
                 keypair: Keypair, retrier: Retrier, *, log: logging.Logger) -> None:
        self._config = config
        self._rpc = rpc
        self._api = api
        self._keypair = keypair
        self._taker = keypair.pubkey()
        self._retrier = retrier
        # Signatures this process has produced: a venue that hands two orders the same
        # message would get one swap on chain booked as two fills.
        self._signed: collections.OrderedDict[Signature, None] = collections.OrderedDict()
        self._executing: set[asyncio.Task[None]] = set()
        self._log = log

    async def run(self, market: Market, request: Request,
                  report_new: Callable[[str, int], Awaitable[None]]) -> Outcome:
        """Build, check, sign, report NEW (await release), land; repeat only after expiry.

        Every signature made for the order is looked up again before the order may end
        without a fill: a transaction whose status trailed its blockhash's expiry must be
        booked as the fill it is, never replaced by a refusal of the next build.
        """
        signed_so_far: list[Signature] = []
        for _attempt in range(self._config.max_builds):
            landed = await self._landed_earlier(signed_so_far, market)
            if landed is not None:
                return landed
            built = await self._api.build(request.input_mint, request.output_mint,
                                          request.amount_in, str(self._taker))
            try:
                signed = await self._check_and_sign(built, request)
            except LimitError as exc:
                return await self._landed_earlier(signed_so_far, market) or Outcome(
                    refused=str(exc), limit=True)
            except RefusedError as exc:
                return await self._landed_earlier(signed_so_far, market) or Outcome(
                    refused=str(exc))
            signature = signed.signatures[0]
            signed_so_far.append(signature)
            await report_new(str(signature), built.last_valid_height)
            outcome = await self._land(signed, built, market)
            if outcome is not None:
                return outcome
        return await self._landed_earlier(signed_so_far, market) or Outcome(
            failed=f"not landed after {self._config.max_builds} transactions")

    async def _landed_earlier(self, signatures: list[Signature],
                              market: Market) -> Outcome | None:
        """The outcome of any earlier attempt that did land (statuses can trail a poll)."""
        if not signatures:
            return None
        for _look in range(_LATE_STATUS_LOOKS):
            for signature in signatures:
                outcome = await self.outcome(signature, market)
                if outcome is not None:
                    return outcome
            await asyncio.sleep(self._config.confirm_poll_s)
        return None

    async def _check_and_sign(self, built: Built, request: Request) -> VersionedTransaction:
        check_message(built.tx, self._taker, self._config.allowed_programs)
        sim = await self._retrier.call("simulateTransaction", lambda: self._rpc.
                                       simulate_transaction(built.tx, commitment=Confirmed))
        deltas = taker_deltas(sim.value, built.tx, self._taker)
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
        return signed

    async def _land(self, signed: VersionedTransaction, built: Built,
                    market: Market) -> Outcome | None:
        """Send until landed or expired; None when expired (a new build is then safe)."""
        signature = signed.signatures[0]
        if self._config.landing == "execute":
            # The answer is logged, never trusted: the order settles by signature status
            # until the blockhash expires, whatever /execute says (a "Failed" may still land).
            task = asyncio.get_running_loop().create_task(
                self._execute(signed, built.request_id))
            self._executing.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._executing.discard)
        raw = bytes(signed)
        opts = TxOpts(skip_preflight=True, max_retries=0, preflight_commitment=Confirmed)
        last_send = -1e9
        loop = asyncio.get_running_loop()
        while True:
            if self._config.landing == "self" and \
                    loop.time() - last_send >= self._config.resend_interval_s:
                last_send = loop.time()
                try:
                    await self._rpc.send_raw_transaction(raw, opts)
                except BaseException as exc:
                    # Sent or not, the bytes are re-sent until the signature has a status or
                    # the blockhash expired; a failed send only matters if it is not temporary
                    # (a solders parse panic is a bad answer, hence temporary).
                    if not (is_temporary(exc) or type(exc).__name__ == "PanicException"):
                        raise
            outcome = await self.outcome(signature, market)
            if outcome is not None:
                return outcome
            height = await self._retrier.call("getBlockHeight", lambda: self._rpc.
                                              get_block_height(Confirmed))
            if height.value > built.last_valid_height:
                # One last look: it may have landed in the final valid block.
                return await self.outcome(signature, market)
            await asyncio.sleep(self._config.confirm_poll_s)

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

    async def outcome(self, signature: Signature, market: Market) -> Outcome | None:
        """The order's result if ``signature`` has a confirmed status, else None.

        A failed transaction still cost its fee: the outcome carries it whenever the
        transaction is served, so the ledger's native SOL stays equal to the chain's.
        """
        statuses = await self._retrier.call("getSignatureStatuses", lambda: self._rpc.
                                            get_signature_statuses([signature]))
        status = statuses.value[0]
        if status is None:
            return None
        found = await self._retrier.call("getTransaction", lambda: self._rpc.get_transaction(
            signature, encoding="base64", commitment=Confirmed,
            max_supported_transaction_version=0))
        served = found.value
        meta = served.transaction.meta if served is not None else None
        tx = served.transaction.transaction if served is not None else None
        if status.err is not None:
            return Outcome(failed=f"transaction failed on chain: {status.err}",
                           signature=str(signature), network_fee=meta.fee if meta else 0)
        if meta is None or not isinstance(tx, VersionedTransaction):
            return None  # status seen before the transaction is served: ask again
        if meta.err is not None:
            return Outcome(failed=f"transaction failed on chain: {meta.err}",
                           signature=str(signature), network_fee=meta.fee)
        deltas = deltas_from(meta.pre_token_balances or [], meta.post_token_balances or [],
                             list(meta.pre_balances), list(meta.post_balances), tx=tx,
                             taker=self._taker, fee=meta.fee)
        base = abs(deltas.swapped(market.base_mint)) / 10**market.base_decimals
        quote = abs(deltas.swapped(market.quote_mint)) / 10**market.quote_decimals
        cost = deltas.native_cost((market.base_mint, market.quote_mint))
        if base <= 0 or quote <= 0:
            return Outcome(failed="confirmed transaction moved none of the pair's tokens",
                           signature=str(signature), network_fee=cost)
        return Outcome(filled_base=base, filled_quote=quote, signature=str(signature),
                       network_fee=cost)


def sign(tx: VersionedTransaction, keypair: Keypair) -> VersionedTransaction:
    """Add the taker's signature to a partially signed v0 transaction, keeping the others."""
    ours = keypair.sign_message(to_bytes_versioned(tx.message))
    keys = list(tx.message.account_keys)
    signatures = [ours if keys[i] == keypair.pubkey() else s
                  for i, s in enumerate(tx.signatures)]
    return VersionedTransaction.populate(tx.message, signatures)
