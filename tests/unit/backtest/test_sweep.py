"""Parameter sweeps: grid parsing, combination order, ranking, one answer for any worker count."""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import numpy as np
import pytest

from pipeline.backtest.engine import run_backtest
from pipeline.backtest.report import summarise
from pipeline.backtest.sweep import (
    SweepRow,
    combinations,
    format_ranking,
    parse_grid,
    rank,
    run_sweep,
    sweep_json,
)
from pipeline.config import PipelineConfig, load_config
from pipeline.errors import BadInputError
from pipeline.ingest.candles import candles_to_ticks, load_bundled
from pipeline.records import SourceId, TickFlag

# fast=60 slow=40 is refused by EmaCross (fast must be below slow).
GRID = {"fast": [10, 60], "slow": [40, 120]}


@cache
def _bundled_ticks() -> np.ndarray:
    return candles_to_ticks(load_bundled(), 1, SourceId.REPLAY, TickFlag.REPLAY)


def _config() -> PipelineConfig:
    return load_config(environ={}, overrides={"risk": {"max_orders_per_s": 1000.0}})


def test_parse_grid_reads_ints_floats_booleans_and_text() -> None:
    grid = parse_grid(["fast=10, 20", "quantity=0.5,1e-1", "allow_short=true,False",
                       "mode=a,b c"])
    assert grid == {"fast": [10, 20], "quantity": [0.5, 0.1], "allow_short": [True, False],
                    "mode": ["a", "b c"]}
    assert [type(v) for v in grid["fast"] + grid["quantity"] + grid["allow_short"]] == [
        int, int, float, float, bool, bool]
    assert list(grid) == ["fast", "quantity", "allow_short", "mode"]


@pytest.mark.parametrize(("specs", "message"), [
    (["fast"], "expected name=value1,value2"),
    (["=10"], "expected name=value1,value2"),
    (["fast slow=1"], "expected name=value1,value2"),
    (["fast="], "no values for fast"),
    (["fast=1,,2"], "an empty value"),
    (["fast=1,2", "fast=3"], "fast is already in the grid"),
    (["fast=1,2,1"], "a value is repeated"),
    (["fast=nan"], "not a finite number"),
])
def test_parse_grid_refuses_malformed_specs(specs: list[str], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        parse_grid(specs)


def test_combinations_vary_the_last_parameter_fastest() -> None:
    assert combinations({"fast": [10, 20], "slow": [50, 100]}) == [
        {"fast": 10, "slow": 50}, {"fast": 10, "slow": 100},
        {"fast": 20, "slow": 50}, {"fast": 20, "slow": 100}]
    assert combinations({}) == [{}]


def test_sweep_gives_identical_rows_with_one_or_two_workers() -> None:
    ticks, config = _bundled_ticks(), _config()
    one = run_sweep(ticks, config, GRID, workers=1, source="bundled")
    two = run_sweep(ticks, config, GRID, workers=2, source="bundled")
    assert one == two
    assert [row.params for row in one] == combinations(GRID)
    # Each row is the plain backtest of its parameters.
    params = {**config.strategy.params, "fast": 10, "slow": 120}
    strategy = dataclasses.replace(config.strategy, params=params)
    direct_config = dataclasses.replace(config, strategy=strategy)
    direct = run_backtest(ticks, direct_config)
    expected = summarise(direct, config.ledger.initial_balances["USDT"], "bundled",
                         config=direct_config)
    assert expected["parameters"]["fast"] == 10
    row = one[1]
    assert row.params == {"fast": 10, "slow": 120}
    assert row.error is None
    assert row.summary is not None
    assert row.fills > 0
    assert row.summary["pnl"] == expected["pnl"]
    assert row.fills == expected["fills"]


def test_an_invalid_combination_is_a_row_with_its_error() -> None:
    rows = run_sweep(_bundled_ticks(), _config(), {"fast": [60], "slow": [40]}, source="b")
    assert len(rows) == 1
    assert rows[0].summary is None
    assert rows[0].fills == 0
    assert rows[0].error is not None
    assert "need 1 <= fast < slow" in rows[0].error
    # The config's own checks count too: symbol_id is not a strategy parameter.
    (row,) = run_sweep(_bundled_ticks(), _config(), {"symbol_id": [2]}, source="b")
    assert row.error is not None
    assert "set strategy.symbol_id instead" in row.error
    with pytest.raises(BadInputError, match="workers must be >= 1"):
        run_sweep(_bundled_ticks(), _config(), GRID, workers=0, source="b")


def _row(fast: int, pnl: float | None, drawdown: float = 1.0) -> SweepRow:
    return SweepRow({"fast": fast}, {"pnl": pnl, "max_drawdown": drawdown}, 3)


def test_rank_best_first_ties_by_parameters_errors_last() -> None:
    failed = SweepRow({"fast": 1}, None, 0, "config strategy.params = ...: bad")
    rows = [failed, _row(30, 5.0), _row(20, None), _row(40, 7.5), _row(10, 5.0)]
    ranked = rank(rows)
    assert [row.params["fast"] for row in ranked] == [40, 10, 30, 20, 1]
    assert rank(list(reversed(rows))) == ranked  # the order is total
    by_drawdown = rank([_row(1, 0.0, 9.0), _row(2, 0.0, 3.0)], "max_drawdown")
    assert [row.params["fast"] for row in by_drawdown] == [2, 1]  # less drawdown is better
    with pytest.raises(BadInputError, match="cannot rank by 'profit'; one of max_drawdown"):
        rank(rows, "profit")


def test_table_and_json_show_the_ranking() -> None:
    failed = SweepRow({"fast": 60, "slow": 40}, None, 0, "need 1 <= fast < slow")
    good = SweepRow({"fast": 10, "slow": 40},
                    {"pnl": 12.5, "return_pct": 0.0125, "max_drawdown": 3.0}, 7)
    table = format_ranking([failed, good], "pnl")
    assert table.splitlines() == [
        "ranked by pnl, highest first",
        "rank  params            pnl  return %  fills  max drawdown  sharpe",
        "   1  fast=10 slow=40  12.5    0.0125      7           3.0       -",
        "   2  fast=60 slow=40  error: need 1 <= fast < slow",
    ]
    data = sweep_json([failed, good])
    assert json.loads(json.dumps(data)) == data
    assert data["combinations"] == 2
    assert data["errors"] == 1
    assert [row["rank"] for row in data["rows"]] == [1, 2]
    assert data["rows"][0]["params"] == {"fast": 10, "slow": 40}
    assert data["rows"][1]["error"] == "need 1 <= fast < slow"
