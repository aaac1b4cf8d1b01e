"""load_strategy: built-ins, user classes by import path, and clear config errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.strategy.config import StrategyConfig
from pipeline.strategy.ema_cross import EmaCross
from pipeline.strategy.loader import load_strategy
from pipeline.strategy.zscore import ZScoreReversion

_USER_MODULE = """
import numpy as np
from pipeline.records import INTENT_DTYPE, empty
from pipeline.strategy.api import OrderStrategy

class Quiet(OrderStrategy):
    def __init__(self, symbol_id: int, level: float = 1.0) -> None:
        self.symbol_id, self.level = symbol_id, level

    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        return empty(INTENT_DTYPE)

class NotAStrategy:
    def __init__(self, symbol_id: int) -> None:
        pass

NOT_A_CLASS = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's strategy module importable as ``user_strats_<n>`` (unique per test)."""
    name = f"user_strats_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(_USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_builtins_by_name() -> None:
    assert isinstance(load_strategy(StrategyConfig()), EmaCross)
    zscore = StrategyConfig(name="zscore", params={"window": 10}, symbol_id=4)
    assert isinstance(load_strategy(zscore), ZScoreReversion)


def test_builtin_by_import_path() -> None:
    config = StrategyConfig(name="pipeline.strategy.ema_cross:EmaCross", params={"fast": 3})
    assert isinstance(load_strategy(config), EmaCross)


def test_user_class_gets_symbol_id_and_params(user_module: str) -> None:
    config = StrategyConfig(name=f"{user_module}:Quiet", params={"level": 2.5}, symbol_id=9)
    strategy: Any = load_strategy(config)
    assert (strategy.symbol_id, strategy.level) == (9, 2.5)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("nonesuch", "unknown strategy"),
        ("nonesuch:", "unknown strategy"),
        ("no_such_module_xyz:Thing", "cannot import"),
        ("{module}:Missing", "has no Missing"),
        ("{module}:NotAStrategy", "not a subclass"),
        ("{module}:NOT_A_CLASS", "not a subclass"),
    ],
)
def test_bad_names_are_config_errors(name: str, reason: str, user_module: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        load_strategy(StrategyConfig(name=name.format(module=user_module)))
    assert caught.value.key == "strategy.name"


def test_a_module_that_fails_on_import_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_strats_mod.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="boom"):
        load_strategy(StrategyConfig(name="broken_strats_mod:Anything"))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ema_cross", {"fast": 50, "slow": 10}),  # ValueError from the constructor
        ("ema_cross", {"speed": 3}),  # TypeError: unknown parameter
        ("zscore", {"window": "long"}),
    ],
)
def test_bad_params_are_config_errors(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        load_strategy(StrategyConfig(name=name, params=params))
    assert caught.value.key == "strategy.params"
    assert caught.value.value == params
