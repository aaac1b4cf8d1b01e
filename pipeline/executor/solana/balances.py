"""Chain balances against the ledger: a mismatch beyond the tolerance stops trading.

The ledger books every fill from the confirmed transaction's token balance changes, so its
latest balance per asset must equal the taker's token account on chain. Anything else (a
duplicate send that landed, a transfer nobody booked, a lost fill) shows up here.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError as SqlOperationalError

from pipeline.executor.solana.orders import Market
from pipeline.executor.solana.rpc import Retrier
from pipeline.executor.solana.tokens import associated_token_address
from pipeline.ledger.db import make_engine
from pipeline.ledger.models import Balance
from pipeline.ring import inspect_segment


class BalanceGuard:
    def __init__(self, rpc: AsyncClient, retrier: Retrier, owner: Pubkey, *,
                 markets: dict[int, Market], assets: dict[int, tuple[str, str]],
                 tolerance: float) -> None:
        self._rpc = rpc
        self._retrier = retrier
        self._tolerance = tolerance
        self._accounts: dict[str, Pubkey] = {}
        for symbol_id, market in markets.items():
            base, quote = assets[symbol_id]
            self._accounts[base] = associated_token_address(
                owner, Pubkey.from_string(market.base_mint))
            self._accounts[quote] = associated_token_address(
                owner, Pubkey.from_string(market.quote_mint))
        self.last_chain: dict[str, float] = {}

    async def chain_balances(self) -> dict[str, float]:
        balances = {}
        for asset, account in self._accounts.items():
            info = await self._retrier.call(
                "getAccountInfo", functools.partial(self._rpc.get_account_info, account,
                                                    Confirmed))
            if info.value is None:
                balances[asset] = 0.0
                continue
            result = await self._retrier.call(
                "getTokenAccountBalance", functools.partial(
                    self._rpc.get_token_account_balance, account, Confirmed))
            balances[asset] = float(result.value.ui_amount_string or 0)
        self.last_chain = balances
        return balances

    async def compare(self, ledger: dict[str, float]) -> str:
        """A description of the first mismatch, or "" when chain and ledger agree."""
        chain = await self.chain_balances()
        for asset, amount in chain.items():
            booked = ledger.get(asset, 0.0)
            if abs(amount - booked) > self._tolerance:
                return f"{asset}: chain {amount} vs ledger {booked}"
        return ""


def ledger_balances(database: Path, reports_ring: Path) -> dict[str, float] | None:
    """Latest ledger balance per asset, or None while reports wait in the ring (or no DB)."""
    info = inspect_segment(reports_ring)
    if info is not None and info.unread:
        return None
    if not database.exists():
        return None
    engine = make_engine(database, read_only=True)
    try:
        with engine.connect() as conn:
            latest = select(func.max(Balance.id)).group_by(Balance.asset)
            rows = conn.execute(select(Balance.asset, Balance.amount)
                                .where(Balance.id.in_(latest))).all()
        return {str(asset): float(amount) for asset, amount in rows}
    except SqlOperationalError as exc:
        if "no such table" in str(exc):
            return None  # the ledger is still creating its schema: balances not known yet
        raise
    finally:
        engine.dispose()


def ledger_in_flight(database: Path, reports_ring: Path, wait_s: float = 30.0) -> dict[int, str]:
    """Orders the ledger holds as NEW with a signature, once every report is committed."""
    deadline = time.monotonic() + wait_s
    while (info := inspect_segment(reports_ring)) is not None and info.unread \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    if not database.exists():
        return {}
    engine = make_engine(database, read_only=True)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT client_order_id, venue_ref FROM orders "
                                     "WHERE status = 'new' AND venue_ref != ''")).all()
        return {int(coid) % (1 << 64): str(ref) for coid, ref in rows}
    except SqlOperationalError as exc:
        if "no such table" in str(exc):
            return {}  # the ledger is still creating its schema: nothing was ever booked
        raise
    finally:
        engine.dispose()
