"""Simulated balance changes on any RPC: the balance fields, else the ``accounts`` option.

The localnet's ``sim_no_balances`` fault answers ``simulateTransaction`` as older nodes and
many providers do (no balance fields); ``sim_no_accounts`` also ignores ``accounts``. The
fallback must give the same :class:`Deltas` as the fields, keep refusing tampered swaps,
and name the missing capability when neither exists.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from localnet_kit import Localnet, running_localnet
from solana.rpc.async_api import AsyncClient
from solders.account import Account
from solders.address_lookup_table_account import ID as LOOKUP_TABLE_PROGRAM
from solders.address_lookup_table_account import (
    LOOKUP_TABLE_META_SIZE,
    AddressLookupTableAccount,
)
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from test_solana_tampered import DrainsSol, PaysLess, TakesMoreInput

from pipeline.executor.solana.checks import (
    Deltas,
    RefusedError,
    check_deltas,
    message_fee,
)
from pipeline.executor.solana.simulate import NO_SIMULATION_CAPABILITY, simulated_deltas
from pipeline.localnet.maker import Maker, transfer_checked
from pipeline.localnet.world import Asset
from pipeline.solana.rpc import Retrier
from pipeline.solana.tokens import TOKEN_PROGRAM_ID, pack_account

BUY_USDT = 150_000_000  # 150 USDT in base units
SELL_SOL = 10**9  # 1 SOL


def _order(net: Localnet, side: str) -> tuple[VersionedTransaction, dict[str, str], list[str]]:
    """A swap transaction from the localnet's maker: ``buy`` pays USDT, ``sell`` pays SOL."""
    sol, usdt = str(net.world.assets["SOL"].mint), str(net.world.assets["USDT"].mint)
    source, target, amount = (usdt, sol, BUY_USDT) if side == "buy" else (sol, usdt, SELL_SOL)
    body = net.maker.order({"inputMint": source, "outputMint": target, "amount": str(amount),
                            "taker": str(net.world.trader.pubkey())})
    tx = VersionedTransaction.from_bytes(base64.b64decode(body["transaction"]))
    return tx, body, [source, target]


def _simulate(net: Localnet, tx: VersionedTransaction, mints: Sequence[str]) -> Deltas:
    async def run() -> Deltas:
        retrier = Retrier(attempts=3, backoff_s=0.02, timeout_s=5.0,
                          log=logging.getLogger("test.simulate"))
        async with AsyncClient(net.url) as rpc:
            return await simulated_deltas(rpc, retrier, tx, net.world.trader.pubkey(), mints)

    return asyncio.run(run())


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_the_fallback_gives_the_same_deltas_as_the_balance_fields(tmp_path: Path,
                                                                  side: str) -> None:
    with running_localnet(tmp_path) as net:
        tx, body, mints = _order(net, side)
        with_fields = _simulate(net, tx, mints)
        source, target = mints
        assert with_fields == Deltas({source: -int(body["inAmount"]),
                                      target: int(body["outAmount"])},
                                     lamports=-message_fee(tx), fee=message_fee(tx))
        served = net.admin({"faults": [{"kind": "sim_no_balances", "count": 1000}]})
        assert served["faults_pending"] == 1
        by_accounts = _simulate(net, tx, mints)
        # Two simulations answered without the fields: the plain one and the fallback's.
        assert net.admin({})["faults_served"] - served["faults_served"] == 2
        assert by_accounts == with_fields


def test_without_fields_or_accounts_the_swap_is_refused_naming_the_capability(
        tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        tx, _body, mints = _order(net, "buy")
        net.admin({"faults": [{"kind": "sim_no_accounts", "count": 1000}]})
        with pytest.raises(RefusedError) as refused:
            _simulate(net, tx, mints)
        assert str(refused.value) == NO_SIMULATION_CAPABILITY
        assert "neither balance fields nor the accounts option" in str(refused.value)
        assert "executor.solana.rpc_url" in str(refused.value)


@pytest.mark.parametrize(("maker_class", "why"), [
    (PaysLess, "gives"),
    (DrainsSol, "lamports"),
    (TakesMoreInput, "the swap takes"),
])
def test_a_tampered_swap_is_still_refused_under_the_fallback(tmp_path: Path,
                                                             maker_class: type[Maker],
                                                             why: str) -> None:
    with running_localnet(tmp_path, maker_class=maker_class) as net:
        tx, body, mints = _order(net, "sell")
        net.admin({"faults": [{"kind": "sim_no_balances", "count": 1000}]})
        deltas = _simulate(net, tx, mints)
        assert net.admin({})["faults_served"] == 2  # the fallback did the looking
        with pytest.raises(RefusedError, match=why):
            check_deltas(deltas, input_mint=mints[0], output_mint=mints[1],
                         max_in=int(body["inAmount"]), min_out=int(body["outAmount"]),
                         max_fee_lamports=100_000)


def test_a_failed_simulation_is_refused_without_falling_back(tmp_path: Path) -> None:
    with running_localnet(tmp_path, trader_start={"USDT": 1.0, "SOL": 10.0}) as net:
        tx, _body, mints = _order(net, "buy")  # pays 150 USDT from a wallet holding 1
        net.admin({"faults": [{"kind": "sim_no_balances", "count": 1000}]})
        with pytest.raises(RefusedError, match="simulation failed"):
            _simulate(net, tx, mints)
        assert net.admin({})["faults_served"] == 1


_HIDDEN = Pubkey.new_unique()  # a token account of the taker that is not an associated one
_TABLE = Pubkey.new_unique()
_DRAIN = 50_000_000  # 50 USDT


class DrainsThroughALookupTable(Maker):
    """An honest swap plus a drain of the taker's other USDT account, whose address the
    message loads from an address lookup table: only a resolved table shows it."""

    def _build(self, taker: Pubkey, source: Asset, target: Asset, amount: int,
               out_amount: int, *, quote_id: str) -> tuple[VersionedTransaction, int]:
        world, maker = self._world, self._world.maker.pubkey()
        usdt = world.assets["USDT"]
        legs = [transfer_checked(world.token_account(taker, source.name), source.mint,
                                 world.token_account(maker, source.name), taker,
                                 amount=amount, decimals=source.decimals),
                transfer_checked(world.token_account(maker, target.name), target.mint,
                                 world.token_account(taker, target.name), maker,
                                 amount=out_amount, decimals=target.decimals),
                transfer_checked(_HIDDEN, usdt.mint, world.token_account(maker, "USDT"), taker,
                                 amount=_DRAIN, decimals=usdt.decimals)]
        blockhash, last_valid = self._chain.latest_blockhash()
        message = MessageV0.try_compile(taker, legs, [AddressLookupTableAccount(
            _TABLE, [_HIDDEN])], blockhash)
        assert _HIDDEN not in message.account_keys  # loaded from the table, not static
        signature = world.maker.sign_message(to_bytes_versioned(message))
        signers = message.account_keys[: message.header.num_required_signatures]
        return VersionedTransaction.populate(message, [
            signature if key == maker else Signature.default() for key in signers]), last_valid


def test_the_fallback_sees_accounts_loaded_from_lookup_tables(tmp_path: Path) -> None:
    with running_localnet(tmp_path, maker_class=DrainsThroughALookupTable) as net:
        trader, usdt = net.world.trader.pubkey(), net.world.assets["USDT"].mint
        net.chain.set_account(_HIDDEN, Account(10**7, pack_account(usdt, trader, _DRAIN),
                                               TOKEN_PROGRAM_ID))
        header = struct.pack("<IQQBBH", 1, 2**64 - 1, 0, 0, 0, 0)  # active, no authority
        net.chain.set_account(_TABLE, Account(
            10**7, header.ljust(LOOKUP_TABLE_META_SIZE, b"\0") + bytes(_HIDDEN),
            LOOKUP_TABLE_PROGRAM))
        tx, body, mints = _order(net, "sell")
        net.admin({"faults": [{"kind": "sim_no_balances", "count": 1000}]})
        deltas = _simulate(net, tx, mints)
        assert deltas.tokens[str(usdt)] == int(body["outAmount"]) - _DRAIN
        with pytest.raises(RefusedError, match="gives"):
            check_deltas(deltas, input_mint=mints[0], output_mint=mints[1],
                         max_in=int(body["inAmount"]), min_out=int(body["outAmount"]),
                         max_fee_lamports=100_000)
