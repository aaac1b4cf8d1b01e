"""The candles shipped in pipeline/ingest/data, against the shared CSV they came from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.ingest.candles import BUNDLED_FILE, load_bundled, load_csv

SOURCE_CSV = Path("/work/shared/data/sol-usdt-binance-perp-1m-2025/SOL_USDT_USDT-1m-futures.csv")
REPO_ROOT = Path(__file__).resolve().parents[3]
DATA_DIR = REPO_ROOT / "pipeline" / "ingest" / "data"
needs_csv = pytest.mark.skipif(not SOURCE_CSV.exists(), reason="shared market data not present")


def test_bundled_loads_three_days_without_gaps() -> None:
    candles = load_bundled()
    assert len(candles) == 4320
    assert candles["open_time_ms"][0] == 1746372780000  # 2025-05-04 15:33 UTC
    assert np.all(np.diff(candles["open_time_ms"]) == 60_000)
    assert 100.0 < candles["close"].min() < candles["close"].max() < 250.0


def test_attribution_names_source_and_range() -> None:
    text = (DATA_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for expected in (
        "typhonun/DcaTpStrategy",
        "49129d487718bec9811388a381f604580fdb1670",
        "MIT",
        "1746372780000",
        "1746631920000",
        "4320 rows",
    ):
        assert expected in text


@needs_csv
def test_bundled_matches_source_csv_rows() -> None:
    bundled = load_bundled()
    source = load_csv(SOURCE_CSV)[: len(bundled)]
    np.testing.assert_array_equal(bundled, source)


@needs_csv
def test_generator_reproduces_bundle_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "make_bundled_data.py"), "--out-dir",
         str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in (BUNDLED_FILE, "ATTRIBUTION.md"):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name
