"""The taker's simulated balance changes on any RPC: the balance fields, else ``accounts``.

``simulateTransaction`` returns ``preBalances``/``postBalances``/``preTokenBalances``/
``postTokenBalances`` only on Agave since 2025; many providers and older nodes leave them
out. Every node takes the long-documented ``accounts`` option instead (the post-state of
listed accounts): with a read of the same accounts just before, the same :class:`Deltas`
follow.

The accounts read are the taker's system account, its associated token account for each of
the order's mints, and every account the transaction may write (static keys, and those it
loads from address lookup tables): an account the transaction does not write cannot change,
and a token account of the taker it writes is seen however it is addressed, as the balance
fields would show it.

The read and the simulation are separate requests, and the venue runs orders concurrently:
another transaction of the same wallet landing in between would make the difference lie
(hide a drain, or refuse an honest swap). So the accounts are read again after the
simulation, and the difference counts only if both reads agree and the slots run
read <= simulation <= re-read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solders.account import Account
from solders.address_lookup_table_account import ID as LOOKUP_TABLE_PROGRAM
from solders.address_lookup_table_account import AddressLookupTable
from solders.message import MessageHeader
from solders.pubkey import Pubkey
from solders.rpc.errors import MethodNotFoundMessage
from solders.rpc.responses import (
    GetMultipleAccountsResp,
    RpcSimulateTransactionResult,
    SimulateTransactionResp,
)
from solders.transaction import VersionedTransaction

from pipeline.executor.solana.checks import Deltas, RefusedError, message_fee, taker_deltas
from pipeline.solana.rpc import Retrier
from pipeline.solana.tokens import (
    ACCOUNT_LEN,
    TOKEN_PROGRAM_ID,
    associated_token_address,
    unpack_account,
)

NO_SIMULATION_CAPABILITY: Final = (
    "the RPC's simulateTransaction returns neither balance fields nor the accounts option: "
    "executor.solana.rpc_url cannot be used to check swaps before signing")
_CONSISTENT_TRIES: Final = 3  # reads that disagree (a landing in between) before refusing
_MAX_ACCOUNTS: Final = 100  # getMultipleAccounts' limit on Agave


async def simulated_deltas(rpc: AsyncClient, retrier: Retrier, tx: VersionedTransaction,
                           taker: Pubkey, mints: Sequence[str]) -> Deltas:
    """The taker's changes if ``tx`` ran now; RefusedError if it fails or cannot be seen."""
    first = (await _simulate(rpc, retrier, tx, None)).value
    if first.err is not None or has_balances(first):
        return taker_deltas(first, tx, taker)
    addresses = await _watched(rpc, retrier, tx, taker, mints)
    for _try in range(_CONSISTENT_TRIES):
        deltas = await _deltas_by_accounts(rpc, retrier, tx, taker, addresses)
        if deltas is not None:
            return deltas
    raise RefusedError(f"the taker's accounts changed around each of {_CONSISTENT_TRIES} "
                       "simulations (other transactions landing); cannot check the swap")


def has_balances(result: RpcSimulateTransactionResult) -> bool:
    """True if the simulation carries all four balance fields."""
    return None not in (result.pre_balances, result.post_balances,
                        result.pre_token_balances, result.post_token_balances)


async def _deltas_by_accounts(rpc: AsyncClient, retrier: Retrier, tx: VersionedTransaction,
                              taker: Pubkey, addresses: list[Pubkey]) -> Deltas | None:
    """Deltas from read, simulate with ``accounts``, re-read; None if the reads disagree."""
    before = await _read(rpc, retrier, addresses)
    sim = await _simulate(rpc, retrier, tx, addresses)
    result = sim.value
    if result.err is not None:
        raise RefusedError(f"simulation failed: {result.err}")
    if result.accounts is None:
        raise RefusedError(NO_SIMULATION_CAPABILITY)
    if len(result.accounts) != len(addresses):
        raise RefusedError(f"the RPC's simulation returned {len(result.accounts)} accounts "
                           f"for {len(addresses)} addresses; cannot check the swap")
    again = await _read(rpc, retrier, addresses)
    if not before.context.slot <= sim.context.slot <= again.context.slot \
            or before.value != again.value:
        return None
    tokens: dict[str, int] = {}
    for sign, accounts in ((-1, before.value), (1, result.accounts)):
        for account in accounts:
            held = _taker_tokens(account, taker)
            if held is not None:
                tokens[held[0]] = tokens.get(held[0], 0) + sign * held[1]
    # addresses[0] is the taker's own account: its lamports pay the fee and hold native SOL.
    lamports = _lamports(result.accounts[0]) - _lamports(before.value[0])
    return Deltas(tokens, lamports, message_fee(tx))


def _lamports(account: Account | None) -> int:
    return account.lamports if account is not None else 0


def _taker_tokens(account: Account | None, taker: Pubkey) -> tuple[str, int] | None:
    """(mint, amount) if ``account`` is a live SPL token account owned by ``taker``."""
    if account is None or account.lamports == 0 or account.owner != TOKEN_PROGRAM_ID \
            or len(account.data) != ACCOUNT_LEN:
        return None  # missing, closed (lamports 0 until the runtime drops it), or no token
    mint, owner, amount = unpack_account(bytes(account.data))
    return (str(mint), amount) if owner == taker else None


async def _watched(rpc: AsyncClient, retrier: Retrier, tx: VersionedTransaction,
                   taker: Pubkey, mints: Sequence[str]) -> list[Pubkey]:
    """The taker first, then its token accounts of ``mints``, then what ``tx`` may write."""
    message = tx.message
    keys = list(message.account_keys)
    writable = [key for index, key in enumerate(keys)
                if _static_writable(index, len(keys), message.header)]
    atas = [associated_token_address(taker, Pubkey.from_string(mint)) for mint in mints]
    watched = list(dict.fromkeys([taker, *atas, *writable,
                                  *await _loaded_writable(rpc, retrier, tx)]))
    if len(watched) > _MAX_ACCOUNTS:
        raise RefusedError(f"the swap may write {len(watched)} accounts, more than one "
                           f"getMultipleAccounts can read ({_MAX_ACCOUNTS})")
    return watched


def _static_writable(index: int, count: int, header: MessageHeader) -> bool:
    signed = header.num_required_signatures
    if index < signed:
        return index < signed - header.num_readonly_signed_accounts
    return index < count - header.num_readonly_unsigned_accounts


async def _loaded_writable(rpc: AsyncClient, retrier: Retrier,
                           tx: VersionedTransaction) -> list[Pubkey]:
    """The writable addresses ``tx`` loads from address lookup tables."""
    lookups = [lookup for lookup in getattr(tx.message, "address_table_lookups", None) or []
               if lookup.writable_indexes]
    if not lookups:
        return []
    tables = await _read(rpc, retrier, [lookup.account_key for lookup in lookups])
    loaded: list[Pubkey] = []
    for lookup, account in zip(lookups, tables.value, strict=True):
        if account is None or account.owner != LOOKUP_TABLE_PROGRAM:
            raise RefusedError(f"the swap uses lookup table {lookup.account_key}, which is "
                               "not an address lookup table")
        try:
            addresses = AddressLookupTable.deserialize(bytes(account.data)).addresses
        except ValueError:
            raise RefusedError(f"lookup table {lookup.account_key} is malformed") from None
        for index in lookup.writable_indexes:
            if index >= len(addresses):
                raise RefusedError(f"the swap loads index {index} of lookup table "
                                   f"{lookup.account_key}, which has {len(addresses)}")
            loaded.append(addresses[index])
    return loaded


async def _simulate(rpc: AsyncClient, retrier: Retrier, tx: VersionedTransaction,
                    addresses: list[Pubkey] | None) -> SimulateTransactionResp:
    return await retrier.call("simulateTransaction", lambda: rpc.simulate_transaction(
        tx, commitment=Confirmed, accounts_addresses=addresses))


async def _read(rpc: AsyncClient, retrier: Retrier,
                addresses: list[Pubkey]) -> GetMultipleAccountsResp:
    try:
        return await retrier.call("getMultipleAccounts", lambda: rpc.get_multiple_accounts(
            addresses, commitment=Confirmed, encoding="base64"))
    except RPCException as exc:
        if exc.args and isinstance(exc.args[0], MethodNotFoundMessage):
            raise RefusedError("the RPC does not serve getMultipleAccounts, needed because its "
                               "simulateTransaction has no balance fields: "
                               "executor.solana.rpc_url cannot be used to check swaps before "
                               "signing") from None
        raise
