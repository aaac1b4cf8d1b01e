"""`pipeline run` on one host of a cluster: the orders it books carry its shard in their ids,
and a host given another host's market starts nothing."""

from __future__ import annotations

from pathlib import Path

from harness import assert_ledger_consistent, pipeline_env, query, run_pipeline

from pipeline.ids import FIRST_LAYOUT_MIN, shard_of
from pipeline.ledger.models import to_u64

SHARDS = ('[{ id = 5, host = "a", markets = [{ venue = "paper", symbol = "SOL/USDT" }] }, '
          '{ id = 6, host = "b", markets = [{ venue = "solana", symbol = 1 }] }]')


def _cluster_env(shm_dir: Path, host: str) -> dict[str, str]:
    return pipeline_env(shm_dir, PIPELINE__CLUSTER__HOST=host,
                        PIPELINE__CLUSTER__HOSTS='["a", "b"]', PIPELINE__CLUSTER__SHARDS=SHARDS)


def test_the_host_of_the_shard_trades_with_the_shard_in_its_order_ids(
        tmp_path: Path, shm_dir: Path) -> None:
    result = run_pipeline(tmp_path / "var", _cluster_env(shm_dir, "a"), duration_s=4)
    assert result.returncode == 0, result.stdout + result.stderr
    database = tmp_path / "var" / "ledger-paper.sqlite"
    ids = [to_u64(int(row[0])) for row in query(database, "SELECT client_order_id FROM orders")]
    assert ids, result.stdout
    assert {shard_of(i) for i in ids} == {5}
    assert max(ids) < FIRST_LAYOUT_MIN
    assert_ledger_consistent(database)


def test_a_host_given_another_host_s_market_starts_nothing(tmp_path: Path,
                                                           shm_dir: Path) -> None:
    result = run_pipeline(tmp_path / "var", _cluster_env(shm_dir, "b"), duration_s=4)
    assert result.returncode != 0
    assert "ledger exited with code 2 at start-up" in result.stderr
    assert "is in shard 5, which runs on host 'a', not on this host 'b'" in result.stderr
    assert not (tmp_path / "var" / "ledger-paper.sqlite").exists()
    assert list(shm_dir.iterdir()) == []
