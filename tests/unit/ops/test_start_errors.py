"""Start-up problems the operator must fix are told apart from crashes (exit 2, not 3), and
the values behind them are refused where they are read."""

from __future__ import annotations

import argparse
import logging
import sqlite3
from pathlib import Path

import pytest
import zmq
from prometheus_client import CollectorRegistry

from pipeline import bootstrap
from pipeline.argtypes import finite_float, positive_float, positive_int
from pipeline.config import PipelineConfig, load_config
from pipeline.errors import BadInputError, ConfigError, OperationalError, TemporaryError
from pipeline.reload import ConfigReloader
from pipeline.startup import operator_problem


def _config(tmp_path: Path, **table: object) -> PipelineConfig:
    return load_config(environ={}, overrides={"data_dir": str(tmp_path / "var"), **table})


@pytest.mark.parametrize("exc", [
    BadInputError("replay.npz: missing arrays"), OperationalError("in use"),
    NotADirectoryError(20, "Not a directory"), zmq.ZMQError(98, "Address in use"),
    sqlite3.DatabaseError("database disk image is malformed"),
])
def test_config_and_environment_problems_are_the_operator_s(exc: Exception) -> None:
    assert operator_problem(exc)


def test_a_library_error_is_judged_by_its_cause() -> None:
    outer = RuntimeError("wrapped")
    outer.__cause__ = sqlite3.DatabaseError("file is not a database")
    assert operator_problem(outer) == "database: file is not a database"


@pytest.mark.parametrize("exc", [
    KeyError("a bug"), TemporaryError("retry"), sqlite3.OperationalError("database is locked"),
])
def test_bugs_and_passing_trouble_stay_crashes(exc: Exception) -> None:
    assert operator_problem(exc) is None


@pytest.mark.parametrize(("content", "words"), [
    (b'env = "p\xe9per"\n', "not UTF-8"), (None, "Is a directory"),
])
def test_an_unreadable_config_is_a_config_error(tmp_path: Path, content: bytes | None,
                                                words: str) -> None:
    path = tmp_path / "pipeline.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=words):
        load_config(path, environ={})


@pytest.mark.parametrize("value", [-1, 0, float("nan"), float("inf")])
def test_run_timeouts_must_be_finite_and_positive(tmp_path: Path, value: float) -> None:
    with pytest.raises(ConfigError, match=r"run\.stop_timeout_s"):
        _config(tmp_path, run={"stop_timeout_s": value})


def test_a_data_dir_too_long_for_ipc_sockets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too long for the ipc control sockets"):
        load_config(environ={}, overrides={"data_dir": str(tmp_path / ("d" * 120))})


class _Service:
    live_sections = ("strategy",)

    def reload(self, config: PipelineConfig) -> None:
        raise AssertionError("nothing to apply from an unreadable config")


def test_a_reload_of_an_unreadable_config_is_refused_counted_and_the_old_one_kept(
        tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.mkdir()
    config = _config(tmp_path)
    counted: list[int] = []
    reloader = ConfigReloader(config, lambda: load_config(path, environ={}), _Service(),
                              logging.getLogger("test"), on_refused=lambda: counted.append(1))
    with pytest.raises(Exception, match=r"reload refused, old config kept.*Is a directory"):
        reloader.reload("SIGHUP")
    assert reloader.config is config
    assert reloader.refused == 1
    assert counted == [1]


def test_a_corrupted_page_and_a_missing_replay_file_stop_their_owner_only(
        tmp_path: Path) -> None:
    config = _config(tmp_path, ingest={"replay_path": str(tmp_path / "missing.npz")},
                     check={"on_start": False})
    database = config.paths.database
    database.parent.mkdir(parents=True)
    conn = sqlite3.connect(database)
    conn.executescript("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a');"
                       "CREATE TABLE u (y TEXT); INSERT INTO u VALUES ('b');")
    conn.close()
    with database.open("r+b") as handle:  # page 2: t's root
        handle.seek(4096)
        handle.write(b"\xff" * 4096)
    results = {r.name: r for r in bootstrap.run_checks(config)}
    assert results["database_pages"].failed
    assert results["replay"].failed
    registry, log = CollectorRegistry(), logging.getLogger("test")
    with pytest.raises(OperationalError, match="check database_pages failed"):
        bootstrap.refuse_at_start("ledger", config, registry, log)
    with pytest.raises(OperationalError, match="check replay failed"):
        bootstrap.refuse_at_start("ingest", config, registry, log)
    bootstrap.refuse_at_start("strategy", config, registry, log)


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "0", "1e9", "x"])
def test_flags_refuse_numbers_that_cannot_be_meant(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(3600.0)(text)
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(1000)(text if text != "1e9" else str(10**20))
    with pytest.raises(argparse.ArgumentTypeError):
        finite_float(-10.0, 10.0)(text if text not in ("-1", "0") else "11")
    assert finite_float(-10.0, 10.0)("-5") == -5.0
    assert positive_float(3600.0)("2.5") == 2.5
    assert positive_int(1000)("20") == 20


def test_candle_files_refuse_huge_integers_and_deep_nesting(tmp_path: Path) -> None:
    from pipeline.ingest.candles import load_freqtrade_json

    big, deep = tmp_path / "big.json", tmp_path / "deep.json"
    big.write_text(f"[[1600000000000, {2**65}, 2, 1, 1.5, 10]]")
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadInputError, match="row 1: expected 6 numbers"):
        load_freqtrade_json(big)
    with pytest.raises(BadInputError, match="nested too deeply"):
        load_freqtrade_json(deep)
