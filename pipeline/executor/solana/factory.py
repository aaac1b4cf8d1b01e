"""Build the Solana venue from config: endpoints, key file and mints per environment.

On localnet everything comes from the running localnet's manifest (it creates the mints and
the trader key); on devnet and mainnet from ``[executor.solana]`` and the symbols' mints.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from pipeline.errors import OperationalError
from pipeline.executor.solana.balances import ledger_balances, ledger_in_flight
from pipeline.executor.solana.keys import load_keypair
from pipeline.executor.solana.orders import Market
from pipeline.executor.solana.venue import SolanaVenue
from pipeline.localnet.manifest import Manifest
from pipeline.runtime import Runtime

_MANIFEST_WAIT_S = 10.0


def make_solana_venue(runtime: Runtime) -> SolanaVenue:
    config = runtime.config
    solana = config.executor.solana
    import os

    api_key = os.environ.get(solana.api_key_env, "")
    if config.env == "localnet":
        manifest = _await_manifest(config.paths.run_dir)
        rpc_url = swap_url = manifest.url
        key_path = Path(manifest.trader_keypair)
        markets = {s.id: Market(manifest.mints[s.base][0], manifest.mints[s.base][1],
                                manifest.mints[s.quote][0], manifest.mints[s.quote][1])
                   for s in config.symbols}
    else:
        rpc_url, swap_url, key_path = solana.rpc_url, solana.swap_url, Path(solana.keypair_path)
        if not (rpc_url and swap_url and solana.keypair_path):
            raise OperationalError("executor.solana.rpc_url, swap_url and keypair_path are "
                                   f"required on {config.env}")
        markets = {s.id: Market(s.base_mint, s.base_decimals, s.quote_mint, s.quote_decimals)
                   for s in config.symbols if s.base_mint and s.quote_mint}
    ring = Path(config.rings.shm_dir) / runtime.rings.reports.name
    database = config.paths.database
    return SolanaVenue(
        solana, rpc_url=rpc_url, swap_url=swap_url, api_key=api_key,
        keypair=load_keypair(key_path), markets=markets,
        assets={s.id: (s.base, s.quote) for s in config.symbols},
        guard_source=functools.partial(ledger_balances, database, ring),
        ledger_in_flight=functools.partial(ledger_in_flight, database, ring),
        log=runtime.log, registry=runtime.registry)


def _await_manifest(run_dir: Path) -> Manifest:
    deadline = time.monotonic() + _MANIFEST_WAIT_S
    while (manifest := Manifest.read(run_dir)) is None:
        if time.monotonic() > deadline:
            raise OperationalError(f"no localnet running for {run_dir} (start `pipeline "
                                   "localnet` with the same --data-dir)")
        time.sleep(0.1)
    return manifest
