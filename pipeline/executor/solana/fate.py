"""What the chain says about an order's transactions: landed, failed, expired, or not yet.

Each observation asks the chain once (``getSignatureStatuses`` with history for every
transaction of the order) and answers with a fact or with "not yet":

- an :class:`Outcome`: a transaction has a status at the configured commitment. With
  ``err`` null it landed: the fill comes from ``getTransaction``, or, when the RPC does not
  serve it (-32601, null for too long), from the wallet's balance change across it.
  With ``err`` set it failed on chain and still paid its fee.
- :class:`Expired`: no transaction can land any more. Proven, not assumed: each one's
  blockhash is no longer valid (``isBlockhashValid``; without that method, the block
  height is a whole blockhash window past the swap API's ``lastValidBlockHeight``, which
  an API may under-report), and a later status query (its context slot at or past the
  slot that proof was read at: a lagging node proves nothing) finds none of them.
- :class:`Pending`: landed but not yet measurable; the order stays open and unknown.
- ``None``: no status yet and some transaction can still land.

Any exception is the caller's "unknown": the order stays open.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Final

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.jsonrpc import JsonRpcRequest
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

from pipeline.executor.solana.checks import Deltas, deltas_from
from pipeline.executor.solana.wallet import Snapshot, WalletGuard, deltas_between, read_wallet
from pipeline.records import ReportDetail
from pipeline.solana.account import Market
from pipeline.solana.rpc import METHOD_NOT_FOUND, Retrier, rpc_error_code

BLOCKHASH_WINDOW: Final = 152  # blocks a blockhash stays valid for, with a margin


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
    source: ReportDetail = ReportDetail.NONE  # where a chain outcome was read from


@dataclasses.dataclass(frozen=True)
class Expired:
    """Every transaction of the order has expired without landing."""


@dataclasses.dataclass(frozen=True)
class Pending:
    """A transaction landed (or failed) but its effect cannot be measured yet."""

    signature: str
    cause: str


@dataclasses.dataclass
class Attempt:
    """One transaction signed for an order, and what is known of it so far."""

    signature: Signature
    tx: VersionedTransaction | None  # None for one signed before a restart
    last_valid_height: int  # as the swap API stated it; 0 if never known
    before: Snapshot | None = None  # the wallet before signing, if it can measure a fill
    fee: int = 0  # lamports the message fixes as its fee (0: not known)
    generation: int = 0  # WalletGuard generation of its signing
    invalid_at_slot: int | None = None  # the slot at which it was proven unable to land
    landed_at: float | None = None  # monotonic time its landing was first seen
    landed_slot: int = 0

    @property
    def expired(self) -> bool:
        return self.invalid_at_slot is not None


class Fate:
    """Observations of the chain for one RPC (see module doc)."""

    def __init__(self, rpc: AsyncClient, retrier: Retrier, taker: Any, *,
                 commitment: str, details_wait_s: float) -> None:
        self._rpc = rpc
        self._retrier = retrier
        self._taker = taker
        self._landed_levels = (TransactionConfirmationStatus.Finalized,) \
            if commitment == "finalized" \
            else (TransactionConfirmationStatus.Confirmed, TransactionConfirmationStatus.Finalized)
        self._details_wait_s = details_wait_s
        self._has_blockhash_check = True

    async def observe(self, attempts: list[Attempt], market: Market,
                      guard: WalletGuard) -> Outcome | Expired | Pending | None:
        signatures = [a.signature for a in attempts]
        answer = await self._retrier.call("getSignatureStatuses", lambda: self._rpc.
                                          get_signature_statuses(signatures, True))
        for attempt, status in zip(attempts, answer.value, strict=True):
            if status is not None:
                return await self._landed(attempt, status, market, guard)
        open_attempts = [a for a in attempts if not a.expired]
        if open_attempts:  # one height and slot for all of them
            epoch = await self._retrier.call("getEpochInfo", lambda: self._rpc.get_epoch_info(
                Confirmed))
            for attempt in open_attempts:
                await self._prove_expired(attempt, epoch.value.block_height,
                                          epoch.value.absolute_slot)
        proven = [a.invalid_at_slot for a in attempts]
        if all(slot is not None and answer.context.slot >= slot for slot in proven):
            return Expired()
        return None

    async def _landed(self, attempt: Attempt, status: TransactionStatus, market: Market,
                      guard: WalletGuard) -> Outcome | Pending | None:
        confirmed = status.confirmation_status in self._landed_levels or (
            status.confirmations is None and status.confirmation_status is None)  # rooted
        if not confirmed:
            return None  # processed only: it may still be dropped with its fork
        attempt.landed_slot = status.slot
        if attempt.landed_at is None:
            attempt.landed_at = time.monotonic()
        signature = str(attempt.signature)
        missing = "transaction not served yet"
        try:
            found = await self._retrier.call("getTransaction", lambda: self._rpc.get_transaction(
                attempt.signature, encoding="base64", commitment=Confirmed,
                max_supported_transaction_version=0))
            served = found.value
        except Exception as exc:
            served, missing = None, f"getTransaction: {type(exc).__name__}: {exc}"
            if rpc_error_code(exc) == METHOD_NOT_FOUND:
                attempt.landed_at = -1e9  # it never will be served: measure now
        meta = served.transaction.meta if served is not None else None
        tx = served.transaction.transaction if served is not None else None
        if meta is not None and isinstance(tx, VersionedTransaction):
            return _from_meta(signature, meta, tx, taker=self._taker, market=market,
                              status_err=status.err)
        if status.err is not None and attempt.fee:
            # Failed on chain: its fee is fixed by the message it paid for.
            return Outcome(failed=f"transaction failed on chain: {status.err}",
                           signature=signature, network_fee=attempt.fee,
                           source=ReportDetail.FROM_STATUS)
        if time.monotonic() - attempt.landed_at < self._details_wait_s:
            return Pending(signature, f"landed, {missing}")
        measured = await self._measured(attempt, market, guard)
        return measured or Pending(signature, f"landed, {missing}; the wallet cannot "
                                              "measure it alone")

    async def _measured(self, attempt: Attempt, market: Market,
                        guard: WalletGuard) -> Outcome | None:
        """The fill as the wallet's change across the landed transaction, if only it moved
        the wallet since the snapshot taken before signing."""
        if attempt.before is None or not attempt.fee or \
                not guard.alone_since(attempt.generation):
            return None
        mints = (market.base_mint, market.quote_mint)
        after = await read_wallet(self._rpc, self._retrier, self._taker, mints)
        if after.slot < attempt.landed_slot or not guard.alone_since(attempt.generation):
            return None  # a node behind the landing, or another signing meanwhile
        deltas = deltas_between(attempt.before, after, attempt.fee)
        return _fill(str(attempt.signature), deltas, market, ReportDetail.FROM_BALANCE_CHANGE)

    async def _prove_expired(self, attempt: Attempt, height: int, slot: int) -> None:
        """Set ``attempt.invalid_at_slot`` once the chain (at ``height``, ``slot``) shows it
        can no longer land."""
        if not attempt.last_valid_height:  # signed before heights were kept
            attempt.last_valid_height = height + BLOCKHASH_WINDOW
        if height <= attempt.last_valid_height:
            return
        if attempt.tx is not None and self._has_blockhash_check:
            try:
                valid, at_slot = await self._blockhash_valid(attempt.tx)
            except Exception as exc:
                if rpc_error_code(exc) != METHOD_NOT_FOUND:
                    raise
                self._has_blockhash_check = False
            else:
                if not valid:
                    attempt.invalid_at_slot = at_slot
                return
        # No blockhash check: a whole window past the height the swap API stated.
        if height > attempt.last_valid_height + BLOCKHASH_WINDOW:
            attempt.invalid_at_slot = slot

    async def _blockhash_valid(self, tx: VersionedTransaction) -> tuple[bool, int]:
        """``isBlockhashValid`` at the newest bank (processed): if even that refuses the
        blockhash, no later block can take the transaction."""
        request = JsonRpcRequest(method="isBlockhashValid", params=[
            str(tx.message.recent_blockhash), {"commitment": "processed"}])
        result = await self._retrier.call("isBlockhashValid", lambda: self._rpc.
                                          send_rpc_request(request, dict))
        return bool(result["value"]), int(result["context"]["slot"])


def _from_meta(signature: str, meta: Any, tx: VersionedTransaction, *, taker: Any,
               market: Market, status_err: Any) -> Outcome:
    if meta.err is not None or status_err is not None:
        return Outcome(failed=f"transaction failed on chain: {meta.err or status_err}",
                       signature=signature, network_fee=meta.fee,
                       source=ReportDetail.FROM_TRANSACTION)
    deltas = deltas_from(meta.pre_token_balances or [], meta.post_token_balances or [],
                         list(meta.pre_balances), list(meta.post_balances), tx=tx,
                         taker=taker, fee=meta.fee)
    return _fill(signature, deltas, market, ReportDetail.FROM_TRANSACTION)


def _fill(signature: str, deltas: Deltas, market: Market, source: ReportDetail) -> Outcome:
    base = abs(deltas.swapped(market.base_mint)) / 10**market.base_decimals
    quote = abs(deltas.swapped(market.quote_mint)) / 10**market.quote_decimals
    cost = deltas.native_cost((market.base_mint, market.quote_mint))
    if base <= 0 or quote <= 0:
        return Outcome(failed="confirmed transaction moved none of the pair's tokens",
                       signature=signature, network_fee=cost, source=source)
    return Outcome(filled_base=base, filled_quote=quote, signature=signature,
                   network_fee=cost, source=source)
