"""A local RFQ market maker that speaks the Jupiter swap API (Swap v2 and legacy v1 shapes).

It quotes every pair of its assets from the latest tick price plus ``spread_bps`` and answers
with one v0 transaction holding two SPL ``TransferChecked`` legs (taker pays the input asset
to the maker, maker pays the output asset to the taker), partially signed by the maker. The
taker is the fee payer and signs last. Both legs settle in one transaction: atomically.

Swap v2: ``GET /order`` -> quote + transaction + ``requestId``; ``POST /execute`` lands the
signed transaction and answers with Jupiter's status and codes (-1 unknown order, -2 bad
signed transaction, -3 message modified, -2003 quote expired, -2004 rejected, -1000 not
landed). Legacy: ``GET /swap/v1/quote`` then ``POST /swap/v1/swap`` returns the transaction
for the taker to land itself.
"""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.instruction import AccountMeta, Instruction
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from pipeline.localnet.chain import LocalChain
from pipeline.localnet.world import Asset, World
from pipeline.solana.constants import MEMO_PROGRAM
from pipeline.solana.tokens import TOKEN_PROGRAM_ID

_TRANSFER_CHECKED: Final = 12
_BPS: Final = 1e-4
_MEMO_PROGRAM_ID: Final = Pubkey.from_string(MEMO_PROGRAM)


class SwapError(Exception):
    """A Jupiter-shaped error: HTTP status, errorCode and message."""

    def __init__(self, status: int, code: int | str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclasses.dataclass(frozen=True)
class MakerConfig:
    spread_bps: float = 10.0
    quote_ttl_s: float = 5.0
    compute_unit_limit: int = 50_000
    compute_unit_price_micro_lamports: int = 1_000
    execute_timeout_s: float = 5.0


@dataclasses.dataclass(frozen=True)
class _Order:
    message: bytes
    expire_at_s: float
    last_valid_height: int
    in_amount: int
    out_amount: int


def transfer_checked(source: Pubkey, mint: Pubkey, dest: Pubkey, owner: Pubkey, *,
                     amount: int, decimals: int) -> Instruction:
    """SPL Token TransferChecked (instruction 12): amount u64 then decimals u8."""
    data = bytes([_TRANSFER_CHECKED]) + amount.to_bytes(8, "little") + bytes([decimals])
    return Instruction(TOKEN_PROGRAM_ID, data, [
        AccountMeta(source, False, True), AccountMeta(mint, False, False),
        AccountMeta(dest, False, True), AccountMeta(owner, True, False)])


class Maker:
    """Quotes and partially signs swaps against the latest price (``price_of(base, quote)``)."""

    def __init__(self, chain: LocalChain, world: World, config: MakerConfig,
                 price_of: Callable[[str, str], float | None],
                 pairs: Mapping[str, tuple[str, str]]) -> None:
        self._chain = chain
        self._world = world
        self._config = config
        self._price_of = price_of
        self._by_mint = {str(a.mint): a for a in world.assets.values()}
        self._pairs = dict(pairs)  # "base/quote" name -> (base, quote)
        self._orders: dict[str, _Order] = {}
        self._lock = threading.Lock()
        self.executed = 0

    # -- quoting ----------------------------------------------------------------------------
    def _quote(self, params: Mapping[str, str]) -> tuple[Asset, Asset, int, int]:
        try:
            source = self._by_mint[params["inputMint"]]
            target = self._by_mint[params["outputMint"]]
            amount = int(params["amount"])
        except (KeyError, ValueError):
            raise SwapError(400, "INVALID_REQUEST", "inputMint, outputMint and a positive "
                            "integer amount of known mints are required") from None
        if amount <= 0:
            raise SwapError(400, "INVALID_REQUEST", "amount must be positive")
        for base, quote in self._pairs.values():
            if {base, quote} == {source.name, target.name}:
                break
        else:
            raise SwapError(400, "NO_ROUTES_FOUND", f"no market {source.name}->{target.name}")
        price = self._price_of(base, quote)
        if price is None or not price > 0:
            raise SwapError(400, "NO_ROUTES_FOUND", "the maker has no price yet")
        in_units = amount / 10**source.decimals
        if source.name == quote:  # taker buys base
            out_units = in_units / (price * (1 + self._config.spread_bps * _BPS))
        else:  # taker sells base
            out_units = in_units * price * (1 - self._config.spread_bps * _BPS)
        out_amount = int(out_units * 10**target.decimals)
        if out_amount <= 0:
            raise SwapError(400, "INVALID_REQUEST", "amount too small to quote")
        return source, target, amount, out_amount

    def _build(self, taker: Pubkey, source: Asset, target: Asset, amount: int,
               out_amount: int, *, quote_id: str) -> tuple[VersionedTransaction, int]:
        """The swap transaction, unique per quote: the memo carries ``quote_id``.

        Without it two equal orders in one block compile to the same bytes, hence the same
        signature: the chain runs the swap once while the taker books two fills.
        """
        maker = self._world.maker.pubkey()
        blockhash, last_valid = self._chain.latest_blockhash()
        instructions = [
            set_compute_unit_limit(self._config.compute_unit_limit),
            set_compute_unit_price(self._config.compute_unit_price_micro_lamports),
            transfer_checked(self._world.token_account(taker, source.name), source.mint,
                             self._world.token_account(maker, source.name), taker, amount=amount,
                             decimals=source.decimals),
            transfer_checked(self._world.token_account(maker, target.name), target.mint,
                             self._world.token_account(taker, target.name), maker,
                             amount=out_amount, decimals=target.decimals),
            Instruction(_MEMO_PROGRAM_ID, quote_id.encode(), []),
        ]
        message = MessageV0.try_compile(taker, instructions, [], blockhash)
        maker_signature = self._world.maker.sign_message(to_bytes_versioned(message))
        signers = list(message.account_keys[: message.header.num_required_signatures])
        signatures = [maker_signature if key == maker else Signature.default()
                      for key in signers]
        return VersionedTransaction.populate(message, signatures), last_valid

    def _taker(self, params: Mapping[str, Any], key: str) -> Pubkey:
        try:
            return Pubkey.from_string(str(params[key]))
        except (KeyError, ValueError):
            raise SwapError(400, "INVALID_REQUEST", f"{key} must be a base58 public key") \
                from None

    # -- Swap v2 ----------------------------------------------------------------------------
    def order(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /order``: a firm quote and, with ``taker``, the transaction to sign."""
        source, target, amount, out_amount = self._quote(params)
        body = self._quote_body(source, target, amount, out_amount)
        if "taker" not in params:
            return body
        taker = self._taker(params, "taker")
        request_id = uuid.uuid4().hex
        tx, last_valid = self._build(taker, source, target, amount, out_amount,
                                     quote_id=request_id)
        expire_at = time.time() + self._config.quote_ttl_s
        with self._lock:
            self._orders[request_id] = _Order(bytes(to_bytes_versioned(tx.message)), expire_at,
                                              last_valid, amount, out_amount)
        body.update(transaction=base64.b64encode(bytes(tx)).decode(), requestId=request_id,
                    quoteId=request_id, lastValidBlockHeight=last_valid,
                    maker=str(self._world.maker.pubkey()), expireAt=str(int(expire_at)),
                    taker=str(taker))
        return body

    def execute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /execute``: verify the taker's signature on our message, land it, report."""
        with self._lock:
            order = self._orders.pop(str(body.get("requestId")), None)
        if order is None:
            return _failed(-1, "order not found or already executed")
        try:
            tx = VersionedTransaction.from_bytes(base64.b64decode(body["signedTransaction"]))
        except (KeyError, ValueError, TypeError):
            return _failed(-2, "signedTransaction is not a base64 versioned transaction")
        if bytes(to_bytes_versioned(tx.message)) != order.message:
            return _failed(-3, "the signed message differs from the quoted one")
        if not all(tx.verify_with_results()):
            return _failed(-1001, "transaction is not fully signed")
        if time.time() > order.expire_at_s:
            return _failed(-2003, "quote expired")
        signature = self._chain.submit(tx)
        deadline = time.monotonic() + self._config.execute_timeout_s
        while (done := self._chain.status(signature)) is None:
            if time.monotonic() > deadline or self._chain.height > order.last_valid_height:
                return _failed(-1000, "transaction did not land", signature)
            time.sleep(0.005)
        if done.err is not None:
            return _failed(-2004, f"transaction failed: {done.err}", signature)
        self.executed += 1
        return {"status": "Success", "code": 0, "signature": str(signature), "slot": done.slot,
                "inputAmountResult": str(order.in_amount),
                "outputAmountResult": str(order.out_amount)}

    # -- legacy v1 --------------------------------------------------------------------------
    def quote_v1(self, params: Mapping[str, str]) -> dict[str, Any]:
        source, target, amount, out_amount = self._quote(params)
        body = self._quote_body(source, target, amount, out_amount,
                                slippage_bps=int(params.get("slippageBps", "0") or 0))
        body["contextSlot"] = self._chain.height
        return body

    def swap_v1(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /swap/v1/swap``: re-check the quote, then the transaction to self-land."""
        quote = body.get("quoteResponse")
        if not isinstance(quote, Mapping):
            raise SwapError(400, "INVALID_REQUEST", "quoteResponse is required")
        taker = self._taker(body, "userPublicKey")
        # A quote response names its amount inAmount (the request's "amount").
        source, target, amount, out_amount = self._quote(
            {**quote, "amount": str(quote.get("inAmount", ""))})
        if out_amount < int(quote.get("otherAmountThreshold", 0)):
            raise SwapError(400, "SLIPPAGE_EXCEEDED", "the price moved past the threshold")
        tx, last_valid = self._build(taker, source, target, amount, out_amount,
                                     quote_id=uuid.uuid4().hex)
        return {"swapTransaction": base64.b64encode(bytes(tx)).decode(),
                "lastValidBlockHeight": last_valid,
                "prioritizationFeeLamports": self._config.compute_unit_limit
                * self._config.compute_unit_price_micro_lamports // 1_000_000}

    def _quote_body(self, source: Asset, target: Asset, amount: int,
                    out_amount: int, slippage_bps: int = 0) -> dict[str, Any]:
        threshold = out_amount * (10_000 - slippage_bps) // 10_000
        return {"inputMint": str(source.mint), "outputMint": str(target.mint),
                "inAmount": str(amount), "outAmount": str(out_amount),
                "otherAmountThreshold": str(threshold), "swapMode": "ExactIn",
                "slippageBps": slippage_bps, "priceImpactPct": "0", "swapType": "rfq",
                "routePlan": [{"swapInfo": {"label": "localnet-maker",
                                            "inputMint": str(source.mint),
                                            "outputMint": str(target.mint),
                                            "inAmount": str(amount),
                                            "outAmount": str(out_amount)},
                               "percent": 100}]}


def _failed(code: int, error: str, signature: Signature | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "Failed", "code": code, "error": error}
    if signature is not None:
        body["signature"] = str(signature)
    return body
