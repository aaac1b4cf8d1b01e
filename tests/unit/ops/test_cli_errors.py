"""A tool that meets something the operator must fix says what, in one line, without a
traceback, and exits with the operational code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.errors import EXIT_OPERATIONAL
from pipeline.localnet.chain import LocalChain
from pipeline.localnet.world import open_world, save_world


def test_a_localnet_key_readable_by_others_is_one_clear_line(tmp_path: Path) -> None:
    chain = LocalChain()
    save_world(chain, open_world(chain, tmp_path, {"SOL": 9, "USDT": 6}, {"SOL": 1.0},
                                 {"USDT": 1.0}), tmp_path)
    key = tmp_path / "keys" / "localnet-trader.json"
    key.chmod(0o644)
    done = subprocess.run([sys.executable, "-m", "pipeline", "localnet", "--env", "localnet",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == EXIT_OPERATIONAL
    assert "Traceback" not in done.stderr
    assert f"pipeline localnet: keypair file {key} is accessible by group or others" \
        in done.stderr


def test_a_malformed_localnet_state_is_one_clear_line_and_is_kept(tmp_path: Path) -> None:
    chain = LocalChain()
    save_world(chain, open_world(chain, tmp_path, {"SOL": 9, "USDT": 6}, {"SOL": 1.0},
                                 {"USDT": 1.0}), tmp_path)
    state = tmp_path / "localnet-state.json"
    state.write_text('{"assets": {}}')  # truncated by hand: no accounts
    done = subprocess.run([sys.executable, "-m", "pipeline", "localnet", "--env", "localnet",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == EXIT_OPERATIONAL
    assert "Traceback" not in done.stderr
    assert f"pipeline localnet: localnet state {state} is malformed (KeyError" in done.stderr
    assert state.read_text() == '{"assets": {}}', "the operator decides what to do with it"
