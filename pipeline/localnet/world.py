"""The localnet's accounts: trader and maker wallets, one mint per asset, their token accounts.

Created once per data directory and kept across restarts: the keypairs live in
``<data_dir>/keys`` (mode 0600) and the accounts are saved to ``localnet-state.json`` on an
orderly stop and loaded at the next start, so chain balances stay continuous with the
ledger. A localnet that crashed loses the accounts' latest state; the executor's balance
check then sees the mismatch and disables trading, which is the point of the check.

The saved state also records every transaction the chain executed (signature, slot, error),
kept across restarts: the chain's own account of what landed, which tests hold the ledger to.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from pipeline.errors import OperationalError
from pipeline.localnet.chain import LocalChain
from pipeline.solana.keys import load_keypair, write_keypair
from pipeline.solana.tokens import (
    ACCOUNT_LEN,
    MINT_LEN,
    TOKEN_PROGRAM_ID,
    associated_token_address,
    pack_account,
    pack_mint,
)

STATE_FILE: Final = "localnet-state.json"
WALLET_LAMPORTS: Final = 100 * 10**9  # fees and rent for a long session


@dataclasses.dataclass(frozen=True)
class Asset:
    name: str
    mint: Pubkey
    decimals: int


@dataclasses.dataclass(frozen=True)
class World:
    trader: Keypair
    maker: Keypair
    assets: dict[str, Asset]
    trader_key_path: Path

    def token_account(self, owner: Pubkey, asset: str) -> Pubkey:
        return associated_token_address(owner, self.assets[asset].mint)

    def accounts(self) -> list[Pubkey]:
        """Every account the localnet created and persists."""
        keys = [self.trader.pubkey(), self.maker.pubkey()]
        for asset in self.assets.values():
            keys += [asset.mint, self.token_account(self.trader.pubkey(), asset.name),
                     self.token_account(self.maker.pubkey(), asset.name)]
        return keys


def open_world(chain: LocalChain, data_dir: Path, decimals: Mapping[str, int],
               trader_start: Mapping[str, float], maker_start: Mapping[str, float]) -> World:
    """Load the world of ``data_dir`` into ``chain``, or create it with the starting amounts."""
    keys = data_dir / "keys"
    trader_path, maker_path = keys / "localnet-trader.json", keys / "localnet-maker.json"
    state_path = data_dir / STATE_FILE
    if trader_path.exists() and maker_path.exists() and state_path.exists():
        world = _load(chain, state_path, trader_path, maker_path)
        if set(world.assets) == set(decimals):
            return world
    for path in (trader_path, maker_path):
        path.unlink(missing_ok=True)
    trader, maker = Keypair(), Keypair()
    write_keypair(trader_path, trader)
    write_keypair(maker_path, maker)
    assets = {name: Asset(name, Keypair().pubkey(), places) for name, places in decimals.items()}
    world = World(trader, maker, assets, trader_path)
    _create(chain, world, trader_start, maker_start)
    save_world(chain, world, data_dir)
    return world


def _create(chain: LocalChain, world: World, trader_start: Mapping[str, float],
            maker_start: Mapping[str, float]) -> None:
    mint_authority = world.maker.pubkey()
    for owner in (world.trader.pubkey(), world.maker.pubkey()):
        chain.airdrop(owner, WALLET_LAMPORTS)
    for asset in world.assets.values():
        unit = 10**asset.decimals
        amounts = {world.trader.pubkey(): round(trader_start.get(asset.name, 0.0) * unit),
                   world.maker.pubkey(): round(maker_start.get(asset.name, 0.0) * unit)}
        chain.set_account(asset.mint, Account(
            chain.rent_exempt_lamports(MINT_LEN),
            pack_mint(mint_authority, sum(amounts.values()), asset.decimals),
            TOKEN_PROGRAM_ID, False))
        for owner, amount in amounts.items():
            chain.set_account(world.token_account(owner, asset.name), Account(
                chain.rent_exempt_lamports(ACCOUNT_LEN),
                pack_account(asset.mint, owner, amount), TOKEN_PROGRAM_ID, False))


def save_world(chain: LocalChain, world: World, data_dir: Path) -> None:
    """Write every world account's current state (atomically: temp file, then rename)."""
    accounts: dict[str, Any] = {}
    for key in world.accounts():
        account = chain.account(key)
        if account is not None:
            accounts[str(key)] = {"lamports": account.lamports, "owner": str(account.owner),
                                  "data": base64.b64encode(bytes(account.data)).decode()}
    path = data_dir / STATE_FILE
    state = {"assets": {a.name: {"mint": str(a.mint), "decimals": a.decimals}
                        for a in world.assets.values()},
             "accounts": accounts,
             "transactions": _transactions(chain, path)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def _transactions(chain: LocalChain, path: Path) -> list[dict[str, Any]]:
    """The saved record of executed transactions plus this session's (LiteSVM forgets them
    at a restart, the record must not)."""
    try:
        earlier: list[dict[str, Any]] = list(json.loads(path.read_text())["transactions"])
    except (OSError, ValueError, KeyError, TypeError):
        earlier = []  # no saved state yet, or one saved before the record existed
    known = {str(item.get("signature")) for item in earlier}
    for signature, done in chain.processed():
        if str(signature) not in known:
            earlier.append({"signature": str(signature), "slot": done.slot,
                            "err": None if done.err is None else str(done.err)})
    return earlier


def _load(chain: LocalChain, state_path: Path, trader_path: Path, maker_path: Path) -> World:
    try:
        state = json.loads(state_path.read_text())
        for key, item in state["accounts"].items():
            owner = Pubkey.from_string(item["owner"])
            chain.set_account(Pubkey.from_string(key), Account(
                int(item["lamports"]), base64.b64decode(item["data"]), owner, False))
        assets = {name: Asset(name, Pubkey.from_string(a["mint"]), int(a["decimals"]))
                  for name, a in state["assets"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Not starting afresh on our own: the saved accounts are the chain the ledger booked.
        raise OperationalError(f"localnet state {state_path} is malformed ({type(exc).__name__}"
                               f": {exc}); move it away to start a new localnet") from None
    return World(load_keypair(trader_path), load_keypair(maker_path), assets, trader_path)


__all__ = ["SYSTEM_PROGRAM_ID", "Asset", "World", "open_world", "save_world"]
