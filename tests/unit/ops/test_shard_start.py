"""A process refuses to start for a market its host does not run: one in another host's shard,
or, shards being configured, in none. It exits 2 (supervisor does not retry) with the reason
on stderr and in its own JSON log, before it creates a ring or a database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import PROCESSES
from pipeline.errors import EXIT_OPERATIONAL

CLUSTER = """
[[symbols]]
id = 1
name = "SOL/USDT"
base = "SOL"
quote = "USDT"

[[symbols]]
id = 2
name = "JUP/USDC"
base = "JUP"
quote = "USDC"

[[symbols]]
id = 3
name = "BONK/USDC"
base = "BONK"
quote = "USDC"

[cluster]
hosts = ["a", "b"]

[[cluster.shards]]
id = 1
host = "a"
markets = [{ venue = "paper", symbol = "SOL/USDT" }]

[[cluster.shards]]
id = 2
host = "b"
markets = [{ venue = "paper", symbol = "JUP/USDC" }]
"""


def _start(process: str, tmp_path: Path, shm_dir: Path, **environ: str
           ) -> subprocess.CompletedProcess[str]:
    """One process as supervisord runs it, with the cluster config, logging to its file."""
    config = tmp_path / "pipeline.toml"
    config.write_text(CLUSTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE")}
    env.update(PIPELINE__LOG__STDERR="false", PIPELINE__RINGS__SHM_DIR=f'"{shm_dir}"',
               PIPELINE__METRICS__PORTS="{ ingest = 0, strategy = 0, executor = 0, ledger = 0 }",
               **environ)
    return subprocess.run([sys.executable, "-m", "pipeline", process, "--config", str(config),
                           "--data-dir", str(tmp_path / "var")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _start_failures(log_file: Path) -> list[str]:
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    return [str(line["message"]) for line in lines if line.get("event") == "process.start_failed"]


@pytest.mark.parametrize("process", PROCESSES)
def test_a_market_of_another_host_s_shard_is_refused(process: str, tmp_path: Path,
                                                     shm_dir: Path) -> None:
    done = _start(process, tmp_path, shm_dir, PIPELINE__CLUSTER__HOST="b")  # SOL/USDT is a's
    assert done.returncode == EXIT_OPERATIONAL, done.stderr
    reason = ("check shard failed: config strategy.symbol_id = 1: market paper SOL/USDT "
              "(executor.venue, strategy.symbol_id) is in shard 1, which runs on host 'a', "
              "not on this host 'b' (cluster.host)")
    assert reason in done.stderr  # supervisor's <process>.stderr.log, a terminal
    failed, = _start_failures(tmp_path / "var" / "logs" / f"{process}.log")
    assert reason in failed
    assert list(shm_dir.iterdir()) == []
    assert not (tmp_path / "var" / "ledger-paper.sqlite").exists()


def test_a_market_in_no_shard_is_refused(tmp_path: Path, shm_dir: Path) -> None:
    done = _start("strategy", tmp_path, shm_dir, PIPELINE__CLUSTER__HOST="a",
                  PIPELINE__STRATEGY__SYMBOL_ID="3")  # BONK/USDC: a configured symbol
    assert done.returncode == EXIT_OPERATIONAL, done.stderr
    failed, = _start_failures(tmp_path / "var" / "logs" / "strategy.log")
    assert "config strategy.symbol_id = 3: market paper BONK/USDC (executor.venue, " \
           "strategy.symbol_id) is in no shard of cluster.shards" in failed
