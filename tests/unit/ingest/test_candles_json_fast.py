"""The fast freqtrade-JSON reader returns exactly what ``json.loads`` gives, or defers to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import BadInputError
from pipeline.ingest.candles import load_freqtrade_json


def test_fast_path_matches_json_loads_to_the_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, 500)))
    rows = [[1_700_000_000_000 + 60_000 * i, float(c), float(c) * 1.001, float(c) * 0.999,
             float(c), float(v)] for i, (c, v) in enumerate(zip(close, rng.exponential(5, 500),
                                                                 strict=True))]
    rows[3][5] = 0  # an integer volume
    path = tmp_path / "c.json"
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")  # whitespace, newlines
    candles = load_freqtrade_json(path)
    expected = np.array(rows, dtype=np.float64)
    assert candles["open_time_ms"].tolist() == [r[0] for r in rows]
    for i, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        assert candles[name].tobytes() == expected[:, i].tobytes()


@pytest.mark.parametrize("text", ["[[1,2,3,4,5,6],[2,2,3,4,5]]", "[[1,2,3,4,5,NaN]]",
                                  '[[1,2,3,4,5,"6"]]', "[[1,2,3,4,5,[6]]]", "[[1,2,3,4,5,]]"])
def test_odd_files_take_the_json_path_and_name_the_row(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInputError, match=r"bad\.json"):
        load_freqtrade_json(path)
