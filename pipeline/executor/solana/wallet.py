"""The taker's balances at one slot, and a fill measured as the change between two of them.

Some RPCs never serve ``getTransaction`` (providers that restrict history answer -32601) or
serve it only long after the signature is confirmed. A swap that landed is then measured
from the wallet itself: the balances read before signing against the balances read at or
after the slot it landed in. That is only the swap's effect when no other transaction of
the wallet can have landed in between; :class:`WalletGuard` keeps that knowledge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey

from pipeline.executor.solana.checks import Deltas
from pipeline.solana.rpc import Retrier
from pipeline.solana.tokens import associated_token_address, unpack_account


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The taker's lamports and token amounts (base units) as of ``slot``."""

    slot: int
    lamports: int
    tokens: dict[str, int]  # mint -> amount; a missing token account holds 0


async def read_wallet(rpc: AsyncClient, retrier: Retrier, taker: Pubkey,
                      mints: Sequence[str]) -> Snapshot:
    """One ``getMultipleAccounts`` read: the taker and its associated token accounts."""
    keys = [taker, *(associated_token_address(taker, Pubkey.from_string(m)) for m in mints)]
    answer = await retrier.call("getMultipleAccounts",
                                lambda: rpc.get_multiple_accounts(keys, Confirmed))
    accounts = list(answer.value)
    owner = accounts[0]
    tokens = {mint: unpack_account(bytes(account.data))[2] if account is not None else 0
              for mint, account in zip(mints, accounts[1:], strict=True)}
    return Snapshot(answer.context.slot, owner.lamports if owner is not None else 0, tokens)


def deltas_between(before: Snapshot, after: Snapshot, fee: int) -> Deltas:
    """The change from ``before`` to ``after``, as a transaction's :class:`Deltas`."""
    tokens = {mint: after.tokens.get(mint, 0) - amount for mint, amount in before.tokens.items()}
    return Deltas(tokens, after.lamports - before.lamports, fee)


class WalletGuard:
    """Knows when a balance change belongs to one transaction only.

    Every signing bumps a generation. A snapshot taken while no other order of the wallet
    was unsettled, newer than every landing seen so far, measures one transaction if the
    generation has not moved since that transaction was signed.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._unsettled = 0
        self._last_landed_slot = 0

    def quiet(self, snapshot: Snapshot) -> bool:
        """True if ``snapshot`` (taken before our signing) saw every earlier transaction."""
        return self._unsettled == 0 and snapshot.slot >= self._last_landed_slot

    def signed(self) -> int:
        """A transaction was signed: its generation."""
        self._generation += 1
        return self._generation

    def opened(self) -> None:
        self._unsettled += 1

    def settled(self, landed_slot: int = 0) -> None:
        self._unsettled -= 1
        self._last_landed_slot = max(self._last_landed_slot, landed_slot)

    def alone_since(self, generation: int) -> bool:
        """No other transaction was signed after the one of ``generation``."""
        return self._generation == generation
