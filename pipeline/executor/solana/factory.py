"""Build the Solana venue from config (see :mod:`pipeline.solana.account`)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pipeline.errors import OperationalError
from pipeline.executor.solana.venue import SolanaVenue
from pipeline.ledger.inflight import signed_in_flight
from pipeline.runtime import Runtime
from pipeline.solana.account import trading_account
from pipeline.solana.keys import load_keypair


def make_solana_venue(runtime: Runtime) -> SolanaVenue:
    config = runtime.config
    solana = config.executor.solana
    account = trading_account(config)
    keypair = load_keypair(account.keypair_path)
    if str(keypair.pubkey()) != account.owner:
        raise OperationalError(f"executor.solana.owner {account.owner} is not the public key "
                               f"of {account.keypair_path} ({keypair.pubkey()}): the ledger "
                               "would watch another wallet")
    ring = Path(config.rings.shm_dir) / runtime.ports.specs.reports.name
    return SolanaVenue(
        solana, rpc_url=account.rpc_url, swap_url=account.swap_url,
        api_key=os.environ.get(solana.api_key_env, ""),
        keypair=keypair, markets=account.markets,
        ledger_in_flight=functools.partial(signed_in_flight, config.paths.database, ring),
        log=runtime.log, registry=runtime.registry)
