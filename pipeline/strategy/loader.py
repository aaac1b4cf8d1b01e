"""Build the configured strategy: a built-in by name or a user's class by import path."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from pipeline.errors import ConfigError
from pipeline.strategy.api import Strategy
from pipeline.strategy.config import StrategyConfig
from pipeline.strategy.ema_cross import EmaCross
from pipeline.strategy.zscore import ZScoreReversion

BUILT_INS: Final[Mapping[str, type[Strategy]]] = MappingProxyType(
    {"ema_cross": EmaCross, "zscore": ZScoreReversion}
)


def load_strategy(config: StrategyConfig) -> Strategy:
    """``cls(symbol_id=config.symbol_id, **config.params)``; any failure is a ConfigError."""
    cls = _resolve(config.name)
    try:
        return cls(symbol_id=config.symbol_id, **config.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError("strategy.params", config.params, f"{config.name}: {exc}") from exc


def _resolve(name: str) -> Callable[..., Strategy]:
    """The class named by ``strategy.name``; its constructor takes ``symbol_id`` and params."""
    if name in BUILT_INS:
        return BUILT_INS[name]
    module_name, colon, class_name = name.partition(":")
    if not colon or not module_name or not class_name:
        raise ConfigError(
            "strategy.name",
            name,
            f"unknown strategy; use one of {sorted(BUILT_INS)} or 'package.module:ClassName'",
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the user's module raises, it cannot run as configured
        raise ConfigError("strategy.name", name, f"cannot import {module_name}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError("strategy.name", name, f"{module_name} has no {class_name}")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError("strategy.name", name, "not a subclass of pipeline.strategy.api.Strategy")
    return cls
