"""Where the ledger and the executor find the wallet on devnet and mainnet: the configured
public key, checked against the key file the executor signs with."""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.keypair import Keypair

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import OperationalError
from pipeline.executor.solana.factory import make_solana_venue
from pipeline.runtime import Runtime
from pipeline.solana.account import trading_account
from pipeline.solana.keys import write_keypair


def _devnet(tmp_path: Path, key_file: Path, owner: str) -> PipelineConfig:
    solana = {"rpc_url": "http://127.0.0.1:9", "swap_url": "http://127.0.0.1:9",
              "keypair_path": str(key_file), "owner": owner}
    return load_config(environ={}, overrides={
        "env": "devnet", "data_dir": str(tmp_path / "var"),
        "executor": {"venue": "solana", "solana": solana}})


def test_the_owner_comes_from_config_or_else_from_the_key_file(tmp_path: Path) -> None:
    keypair = Keypair()
    key_file = tmp_path / "trader.json"
    write_keypair(key_file, keypair)
    assert trading_account(_devnet(tmp_path, key_file, "")).owner == str(keypair.pubkey())
    other = str(Keypair().pubkey())
    assert trading_account(_devnet(tmp_path, key_file, other)).owner == other


def test_the_executor_refuses_an_owner_that_is_not_its_key(tmp_path: Path) -> None:
    key_file = tmp_path / "trader.json"
    write_keypair(key_file, Keypair())
    config = _devnet(tmp_path, key_file, str(Keypair().pubkey()))
    runtime = Runtime.build(config, "executor", to_stderr=False)
    try:
        with pytest.raises(OperationalError, match="would watch another wallet"):
            make_solana_venue(runtime)
    finally:
        runtime.close()
