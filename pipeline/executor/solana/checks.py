"""Checks a swap transaction must pass before the venue signs it: a lying venue gets nothing.

1. The taker is a required signer of the message (and the fee payer).
2. Every instruction invokes an allowed program (program ids are always static keys, so
   address lookup tables cannot hide one).
3. A simulation of the transaction succeeds and moves the taker's balances only as the
   order allows: at most ``max_in`` of the input token out, at least ``min_out`` of the
   output token in, no other token of the taker down, and at most ``max_fee_lamports`` SOL.

Wrapped SOL: a swap with native SOL on one side (Jupiter wraps and unwraps by default) moves
the taker's lamports, not a token account. For the wrapped-SOL mint the swapped amount is
therefore the token change plus the lamport change net of the transaction fee, and what
the taker pays beyond the swap ("native cost") is the fee alone.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable
from typing import Final

from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.transaction import VersionedTransaction

from pipeline.solana.constants import WRAPPED_SOL_MINT

_COMPUTE_BUDGET: Final = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
_LAMPORTS_PER_SIGNATURE: Final = 5_000
_DEFAULT_UNITS_PER_INSTRUCTION: Final = 200_000
_MAX_UNITS: Final = 1_400_000


class RefusedError(Exception):
    """The transaction is not what the order asked for; it is not signed."""


@dataclasses.dataclass(frozen=True)
class Deltas:
    """The taker's balance changes, in base units (+ received, - paid)."""

    tokens: dict[str, int]  # mint -> change
    lamports: int  # includes the transaction fee the taker paid as fee payer
    fee: int  # the transaction fee in lamports

    def swapped(self, mint: str) -> int:
        """The taker's change in ``mint`` from the swap itself (see module doc)."""
        change = self.tokens.get(mint, 0)
        if mint == WRAPPED_SOL_MINT:
            change += self.lamports + self.fee
        return change

    def native_cost(self, mints: Iterable[str]) -> int:
        """Lamports the transaction cost the taker beyond the swap of ``mints``."""
        return self.fee if WRAPPED_SOL_MINT in mints else -self.lamports


def check_message(tx: VersionedTransaction, taker: Pubkey, allowed: Iterable[str]) -> None:
    message = tx.message
    keys = list(message.account_keys)
    signers = keys[: message.header.num_required_signatures]
    if not signers or signers[0] != taker:
        raise RefusedError("the taker is not the fee payer and first signer")
    allowed_keys = {Pubkey.from_string(p) for p in allowed}
    for instruction in message.instructions:
        program = keys[instruction.program_id_index]
        if program not in allowed_keys:
            raise RefusedError(f"instruction invokes program {program}, which is not allowed")


def taker_deltas(sim: RpcSimulateTransactionResult, tx: VersionedTransaction,
                 taker: Pubkey) -> Deltas:
    """The taker's token and SOL changes shown by a simulation (or a confirmed meta)."""
    if sim.err is not None:
        raise RefusedError(f"simulation failed: {sim.err}")
    if sim.pre_token_balances is None or sim.post_token_balances is None \
            or sim.pre_balances is None or sim.post_balances is None:
        raise RefusedError("the RPC's simulation carries no balances; cannot check the swap")
    return deltas_from(sim.pre_token_balances, sim.post_token_balances, sim.pre_balances,
                       sim.post_balances, tx=tx, taker=taker, fee=message_fee(tx))


def message_fee(tx: VersionedTransaction) -> int:
    """The fee the fee payer will pay: per signature plus compute-unit limit x price."""
    message = tx.message
    keys = list(message.account_keys)
    limit, price, others = None, 0, 0
    for instruction in message.instructions:
        data = bytes(instruction.data)
        if keys[instruction.program_id_index] != _COMPUTE_BUDGET:
            others += 1
        elif data[:1] == b"\x02" and len(data) >= 5:
            limit = struct.unpack_from("<I", data, 1)[0]
        elif data[:1] == b"\x03" and len(data) >= 9:
            price = struct.unpack_from("<Q", data, 1)[0]
    units = min(_MAX_UNITS, _DEFAULT_UNITS_PER_INSTRUCTION * others if limit is None else limit)
    priority = -(-units * price // 1_000_000)  # micro-lamports per unit, rounded up
    return _LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures + priority


def deltas_from(pre_tokens: Iterable[object], post_tokens: Iterable[object],
                pre_lamports: list[int], post_lamports: list[int], *, tx: VersionedTransaction,
                taker: Pubkey, fee: int) -> Deltas:
    tokens: dict[str, int] = {}
    for sign, balances in ((-1, pre_tokens), (1, post_tokens)):
        for item in balances:
            if getattr(item, "owner", None) != taker:
                continue
            mint = str(item.mint)  # type: ignore[attr-defined]
            amount = int(item.ui_token_amount.amount)  # type: ignore[attr-defined]
            tokens[mint] = tokens.get(mint, 0) + sign * amount
    index = list(tx.message.account_keys).index(taker)
    return Deltas(tokens, post_lamports[index] - pre_lamports[index], fee)


def check_deltas(deltas: Deltas, *, input_mint: str, output_mint: str, max_in: int,
                 min_out: int, max_fee_lamports: int) -> None:
    paid = -deltas.swapped(input_mint)
    got = deltas.swapped(output_mint)
    if paid > max_in:
        raise RefusedError(f"the swap takes {paid} of {input_mint}, the order allows {max_in}")
    if got < min_out:
        raise RefusedError(f"the swap gives {got} of {output_mint}, the order needs {min_out}")
    for mint, change in deltas.tokens.items():
        if mint not in (input_mint, output_mint) and change < 0:
            raise RefusedError(f"the swap also takes {-change} of {mint}")
    cost = deltas.native_cost((input_mint, output_mint))
    if cost > max_fee_lamports:
        raise RefusedError(f"the swap costs {cost} lamports, more than {max_fee_lamports}")
