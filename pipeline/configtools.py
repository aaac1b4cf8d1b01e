"""Build frozen config dataclasses from TOML tables, naming the key and value on any error.

Every package declares one frozen dataclass with typed fields and defaults; this module is
the single way to turn a TOML table into one. Unknown keys are refused (a typo must not be
silently ignored in a trading system), and each value is checked against the field's type.
A dataclass may add cross-field checks in ``__post_init__`` by raising ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pipeline.errors import ConfigError

T = TypeVar("T")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(key, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(key, value, f"expected {hint}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "expected a table")
        return build(hint, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, value, "expected a list")
        item = args[0] if args else Any
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "expected a table")
        value_hint = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(f"{key}.{k}", v, value_hint) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, "expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, value, "expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "expected a string")
        return value
    raise ConfigError(key, value, f"unsupported config type {hint}")


def build(cls: type[T], table: Mapping[str, Any], prefix: str = "") -> T:
    """Instantiate ``cls`` from ``table``; missing keys take the dataclass defaults."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            full = f"{prefix}.{key}" if prefix else key
            raise ConfigError(full, table[key], f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name in fields:
        if name in table:
            full = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(full, table[name], hints[name])
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(prefix or cls.__name__, dict(table), str(exc)) from exc


def require(condition: bool, key: str, value: object, reason: str) -> None:
    """Raise ConfigError unless ``condition``; for ``__post_init__`` checks."""
    if not condition:
        raise ConfigError(key, value, reason)
