"""`pipeline run` end to end: four real processes, real rings, real SQLite."""

from __future__ import annotations

from pathlib import Path

from harness import assert_ledger_consistent, pipeline_env, query, run_pipeline


def test_paper_run_trades_and_leaves_a_consistent_ledger(tmp_path: Path, shm_dir: Path) -> None:
    result = run_pipeline(tmp_path / "var", pipeline_env(shm_dir), duration_s=6)
    assert result.returncode == 0, result.stdout + result.stderr
    database = tmp_path / "var" / "ledger-paper.sqlite"
    fills = query(database, "SELECT count(*) FROM fills")[0][0]
    assert fills > 0, result.stdout
    latencies = query(database, "SELECT count(*) FROM orders WHERE status = 'filled' "
                                "AND tick_to_order_ns > 0")[0][0]
    assert latencies == fills
    assert_ledger_consistent(database)
    assert "run summary" in result.stdout
    assert list(shm_dir.iterdir()) == [], "rings must be unlinked after an orderly stop"


def test_a_second_run_continues_the_same_ledger(tmp_path: Path, shm_dir: Path) -> None:
    data_dir = tmp_path / "var"
    first = run_pipeline(data_dir, pipeline_env(shm_dir), duration_s=3)
    assert first.returncode == 0, first.stderr
    database = data_dir / "ledger-paper.sqlite"
    fills_before = query(database, "SELECT count(*) FROM fills")[0][0]
    second = run_pipeline(data_dir, pipeline_env(shm_dir), duration_s=3)
    assert second.returncode == 0, second.stderr
    assert query(database, "SELECT count(*) FROM fills")[0][0] > fills_before
    assert_ledger_consistent(database)


def test_bad_config_is_refused_with_the_key_named(tmp_path: Path, shm_dir: Path) -> None:
    env = pipeline_env(shm_dir, PIPELINE__LEDGER__COMMITS_PER_S="-5")
    result = run_pipeline(tmp_path / "var", env, duration_s=1)
    assert result.returncode == 2
    assert "commits_per_s" in result.stderr
