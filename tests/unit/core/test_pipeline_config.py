"""The one config: TOML file, environment overrides, per-environment defaults, refusals."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, env_overrides, load_config
from pipeline.errors import ConfigError
from pipeline.strategy.loader import BUILT_INS

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "example.toml"


def test_example_config_loads_and_matches_the_defaults_it_documents() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.env == "paper"
    assert config.ingest.rate_hz == 300.0
    assert config.strategy.name == "ema_cross"
    assert config.strategy.params == {"fast": 12, "slow": 48, "quantity": 1.0, "bar_s": 60.0}
    assert config.ledger.commits_per_s == 500.0
    assert config.ledger.trade_enabled_default is True  # paper trades by default
    assert config.metrics.host == "127.0.0.1"


def test_the_example_strategy_parameters_are_the_class_defaults() -> None:
    """One default everywhere: the CLI and a config without params get the class's."""
    config = load_config(EXAMPLE, environ={})
    defaults = inspect.signature(BUILT_INS[config.strategy.name]).parameters
    assert config.strategy.params
    for name, value in config.strategy.params.items():
        assert defaults[name].default == value, name


def test_environment_overrides_are_parsed_as_toml_values() -> None:
    table = env_overrides({"PIPELINE__LEDGER__COMMITS_PER_S": "400",
                           "PIPELINE__STRATEGY__NAME": "zscore",
                           "PIPELINE__METRICS__PORTS": "{ ingest = 0 }",
                           "UNRELATED": "1"})
    assert table == {"ledger": {"commits_per_s": 400}, "strategy": {"name": "zscore"},
                     "metrics": {"ports": {"ingest": 0}}}
    config = load_config(None, environ={"PIPELINE__LEDGER__COMMITS_PER_S": "400"})
    assert config.ledger.commits_per_s == 400.0


def test_only_the_offline_environments_trade_by_default() -> None:
    assert load_config(None, environ={}).ledger.trade_enabled_default is True
    localnet = load_config(None, environ={}, overrides={"env": "localnet"})
    assert localnet.ledger.trade_enabled_default is True
    for env in ("devnet", "mainnet"):
        real = load_config(None, environ={},
                           overrides={"env": env, "executor": {"venue": "solana"}})
        assert real.ledger.trade_enabled_default is False, env


@pytest.mark.parametrize(("overrides", "key"), [
    ({"ledger": {"commits_per_s": -1.0}}, "commits_per_s"),
    ({"ingest": {"rate_hz": "fast"}}, "ingest.rate_hz"),
    ({"ingest": {"no_such_key": 1}}, "ingest.no_such_key"),
    ({"env": "prod"}, "env"),
    ({"env": "mainnet"}, "executor.venue"),  # mainnet must never trade on paper
    ({"rings": {"ticks_capacity": 1000}}, "ticks_capacity"),
    ({"run": {"slice_us": {"strategy": 50}}}, "run.slice_us.strategy"),
    ({"run": {"slice_us": {"monitor": 100}}}, "run.slice_us.monitor"),
    ({"run": {"pin": "yes"}}, "run.pin"),
    ({"run": {"cpus": {"strategy": []}}}, "run.cpus.strategy"),
    ({"run": {"cpus": {"strategy": [-1]}}}, "run.cpus.strategy"),
    ({"run": {"cpus": {"backup": [0]}}}, "run.cpus.backup"),
    ({"ledger": {"busy_timeout_ms": 5000}}, "ledger.busy_timeout_ms"),
    ({"rings": {"ticks_capacity": 1 << 23}}, "rings.ticks_capacity"),
    ({"run": {"heartbeat_timeout_s": 0.6}}, "ledger.busy_timeout_ms"),
    ({"run": {"hang_timeout_s": 1.0}}, "run.hang_timeout_s"),
])
def test_bad_values_are_refused_naming_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, environ={}, overrides=overrides)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[ingest\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(broken, environ={})


def test_each_environment_has_its_own_database_and_rings(tmp_path: Path) -> None:
    paper = PipelineConfig(env="paper", data_dir=str(tmp_path / "paper"))
    local = load_config(None, environ={},
                        overrides={"env": "localnet", "data_dir": str(tmp_path / "local")})
    assert paper.paths.database != local.paths.database
    assert paper.paths.database.name == "ledger-paper.sqlite"
    assert paper.paths.ring_prefix.startswith("pl-paper-")
    assert local.paths.ring_prefix.startswith("pl-localnet-")


def test_a_lock_wait_longer_than_the_heartbeat_budget_names_both_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={}, overrides={"ledger": {"busy_timeout_ms": 5000}})
    assert caught.value.key == "ledger.busy_timeout_ms"
    assert "run.heartbeat_timeout_s" in str(caught.value)
    relaxed = load_config(None, environ={}, overrides={
        "ledger": {"busy_timeout_ms": 5000},
        "run": {"heartbeat_timeout_s": 11.0, "hang_timeout_s": 11.0}})
    assert relaxed.ledger.busy_timeout_ms == 5000
