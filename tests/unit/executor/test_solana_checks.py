"""The pre-signing arithmetic: the fee a message will cost, and swaps with native SOL on one
side (Jupiter unwraps wrapped SOL into lamports), where the swapped amount is the lamport
change net of the fee."""

from __future__ import annotations

import pytest
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.null_signer import NullSigner
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from pipeline.executor.solana.checks import (
    WRAPPED_SOL_MINT,
    Deltas,
    RefusedError,
    check_deltas,
    message_fee,
)

USDC = "EPjFWdd5AufqSSqeM2qJxdxtVpTKvNnKGF4LmZp1Ttx1"
TAKER, MAKER = Keypair(), Keypair()


def _tx(*instructions: object, signers: int = 1) -> VersionedTransaction:
    payer = TAKER.pubkey()
    body = [transfer(TransferParams(from_pubkey=payer, to_pubkey=MAKER.pubkey(), lamports=1))]
    if signers == 2:  # the maker signs a leg of its own
        body.append(transfer(TransferParams(from_pubkey=MAKER.pubkey(), to_pubkey=payer,
                                            lamports=1)))
    message = MessageV0.try_compile(payer, [*instructions, *body], [], Hash.default())
    keys = message.account_keys[: message.header.num_required_signatures]
    return VersionedTransaction(message, [NullSigner(k) for k in keys])


def test_the_fee_is_per_signature_plus_limit_times_price() -> None:
    plain = _tx()
    assert message_fee(plain) == 5_000  # one signature, no priority fee
    priced = _tx(set_compute_unit_limit(200_000), set_compute_unit_price(10_000), signers=2)
    assert message_fee(priced) == 2 * 5_000 + 200_000 * 10_000 // 1_000_000
    # No limit instruction: 200,000 units per other instruction; micro-lamports round up.
    unlimited = _tx(set_compute_unit_price(3))
    assert message_fee(unlimited) == 5_000 + 1  # 200,000 x 3 / 1e6 = 0.6 -> 1


def test_a_sol_buy_that_unwraps_counts_the_lamports_net_of_the_fee() -> None:
    # Pays 150 USDC, receives 1 SOL as lamports, pays a 15,000-lamport fee.
    deltas = Deltas({USDC: -150_000_000}, lamports=10**9 - 15_000, fee=15_000)
    assert deltas.swapped(WRAPPED_SOL_MINT) == 10**9
    assert deltas.native_cost((USDC, WRAPPED_SOL_MINT)) == 15_000
    check_deltas(deltas, input_mint=USDC, output_mint=WRAPPED_SOL_MINT, max_in=150_000_000,
                 min_out=10**9, max_fee_lamports=20_000)


def test_a_sol_sell_that_takes_extra_lamports_is_over_its_input_limit() -> None:
    # Sells 1 SOL but the transaction also moves 0.01 SOL more out of the wallet.
    deltas = Deltas({USDC: 150_000_000}, lamports=-(10**9 + 10**7 + 5_000), fee=5_000)
    with pytest.raises(RefusedError, match="takes 1010000000"):
        check_deltas(deltas, input_mint=WRAPPED_SOL_MINT, output_mint=USDC, max_in=10**9,
                     min_out=150_000_000, max_fee_lamports=20_000)


def test_without_native_sol_every_lost_lamport_is_cost() -> None:
    # A token-only swap that also opens an account: the rent is cost beyond the fee.
    deltas = Deltas({USDC: -1, "So1Other": 1}, lamports=-(5_000 + 2_039_280), fee=5_000)
    assert deltas.native_cost((USDC, "So1Other")) == 2_044_280
    with pytest.raises(RefusedError, match="costs 2044280 lamports"):
        check_deltas(deltas, input_mint=USDC, output_mint="So1Other", max_in=1, min_out=1,
                     max_fee_lamports=100_000)
