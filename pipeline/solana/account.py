"""Where the trading account lives, per environment: endpoints, key file, mints.

On localnet everything comes from the running localnet's manifest (it creates the mints and
the trader key); on devnet and mainnet from ``[executor.solana]`` and the symbols' mints.
The executor trades with it; the ledger reads its balances on chain.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Final

from pipeline.config import PipelineConfig
from pipeline.errors import OperationalError
from pipeline.localnet.manifest import Manifest
from pipeline.solana.constants import WRAPPED_SOL_MINT
from pipeline.solana.keys import load_keypair

NATIVE_SOL: Final = "native SOL"  # the fee asset when no traded asset is SOL itself


@dataclasses.dataclass(frozen=True)
class Market:
    """A symbol's two mints and their decimals."""

    base_mint: str
    base_decimals: int
    quote_mint: str
    quote_decimals: int


@dataclasses.dataclass(frozen=True)
class TradingAccount:
    rpc_url: str
    swap_url: str
    keypair_path: Path
    owner: str  # the wallet's public key, base58
    markets: dict[int, Market]  # symbol_id -> its mints
    mints: dict[str, tuple[str, int]]  # asset -> (mint, decimals)


def native_asset(config: PipelineConfig) -> str:
    """The asset network fees are paid in: the one traded as wrapped SOL (its native and
    wrapped amounts are one balance), else :data:`NATIVE_SOL`."""
    for symbol in config.symbols:
        for asset, mint in ((symbol.base, symbol.base_mint), (symbol.quote, symbol.quote_mint)):
            if mint == WRAPPED_SOL_MINT:
                return asset
    return NATIVE_SOL


def trading_account(config: PipelineConfig, wait_s: float = 10.0) -> TradingAccount:
    """The account of ``config.env``; waits up to ``wait_s`` for a localnet to be up."""
    solana = config.executor.solana
    if config.env == "localnet":
        manifest = await_manifest(config.paths.run_dir, wait_s)
        mints = dict(manifest.mints)
        # Set endpoints win over the manifest's: a proxy between the pipeline and the
        # localnet (fault drills, recording) sees every call as a real provider would.
        return TradingAccount(solana.rpc_url or manifest.url, solana.swap_url or manifest.url,
                              Path(manifest.trader_keypair), manifest.trader,
                              _markets(config, mints), mints)
    if not (solana.rpc_url and solana.swap_url and solana.keypair_path):
        raise OperationalError("executor.solana.rpc_url, swap_url and keypair_path are "
                               f"required on {config.env}")
    mints = {}
    for s in config.symbols:
        if s.base_mint and s.quote_mint:
            mints[s.base] = (s.base_mint, s.base_decimals)
            mints[s.quote] = (s.quote_mint, s.quote_decimals)
    owner = solana.owner or str(load_keypair(Path(solana.keypair_path)).pubkey())
    return TradingAccount(solana.rpc_url, solana.swap_url, Path(solana.keypair_path), owner,
                          _markets(config, mints), mints)


def _markets(config: PipelineConfig, mints: dict[str, tuple[str, int]]) -> dict[int, Market]:
    return {s.id: Market(mints[s.base][0], mints[s.base][1], mints[s.quote][0],
                         mints[s.quote][1])
            for s in config.symbols if s.base in mints and s.quote in mints}


def await_manifest(run_dir: Path, wait_s: float) -> Manifest:
    deadline = time.monotonic() + wait_s
    while (manifest := Manifest.read(run_dir)) is None:
        if time.monotonic() > deadline:
            raise OperationalError(f"no localnet running for {run_dir} (start `pipeline "
                                   "localnet` with the same --data-dir)")
        time.sleep(0.1)
    return manifest
