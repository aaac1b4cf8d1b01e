"""Regenerate the replay candles bundled in ``pipeline/ingest/data`` from the shared CSV.

The bundle is the first ``--rows`` one-minute candles of the Binance SOL/USDT perp CSV in
/work/shared/data (README section 2), stored as a compressed ``.npz`` holding one array per
column, plus ``ATTRIBUTION.md``. The output is byte-for-byte reproducible: numpy's own
``savez_compressed`` stamps each zip member with the current time, so this script writes
the zip itself with a fixed timestamp, fixed member order and fixed compression level.

    .venv/bin/python tools/make_bundled_data.py           # rewrite both files
    .venv/bin/python tools/make_bundled_data.py --check   # exit 1 if they are out of date

(Byte identity also assumes the same zlib build; the check reports any difference.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import sys
import zipfile
from pathlib import Path
from typing import Final

import numpy as np

from pipeline.ingest.candles import BUNDLED_FILE, CANDLE_COLUMNS, load_csv

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DATA_DIR: Final = REPO_ROOT / "pipeline" / "ingest" / "data"
DEFAULT_CSV: Final = Path(
    "/work/shared/data/sol-usdt-binance-perp-1m-2025/SOL_USDT_USDT-1m-futures.csv"
)
DEFAULT_ROWS: Final = 4320  # three days of 1-minute candles
ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)  # earliest zip timestamp: no build time leaks in

ATTRIBUTION: Final = """\
# Bundled replay data: `{bundle}`

- **What:** the first {rows} one-minute OHLCV candles of **SOL/USDT:USDT on Binance USDT-M
  perpetual futures**. Prices in USDT per SOL, volume in SOL, values unchanged.
- **Range:** candle open times {first} to {last} UTC inclusive
  (`open_time_ms` {first_ms} to {last_ms}), {rows} rows, {gaps} gaps
  (a gap being consecutive candles more than one minute apart).
- **Source repository:** [typhonun/DcaTpStrategy](https://github.com/typhonun/DcaTpStrategy),
  file `user_data/data/binance/futures/SOL_USDT_USDT-1m-futures.feather`, added in commit
  `49129d487718bec9811388a381f604580fdb1670` (2025-06-19), unchanged at
  `057525d1db7e665da1122809889fb38144460d88`.
- **Converted from:** `{csv_name}`, the same rows as CSV (see section 2 of
  /work/shared/data/README.md); its sha256 is `{csv_sha}`.
- **License:** MIT, "Copyright (c) 2025 [typhonun]". Market data originates from Binance,
  whose terms of use also apply.
- **Format:** a zip (`.npz`) of one 1-D array per column: `open_time_ms` (int64) and
  `open`, `high`, `low`, `close`, `volume` (float64). Its sha256 is `{npz_sha}`.
- **Regenerate:** `.venv/bin/python tools/make_bundled_data.py` (add `--check` to verify).
"""


def npz_bytes(candles: np.ndarray) -> bytes:
    """A deterministic compressed npz of ``candles``, one member per column."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for col in CANDLE_COLUMNS:
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(candles[col]))
            info = zipfile.ZipInfo(f"{col}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return out.getvalue()


def attribution_text(candles: np.ndarray, csv_path: Path, csv_sha: str, npz_sha: str) -> str:
    """The ATTRIBUTION.md text describing exactly this slice."""

    def utc(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")

    first_ms = int(candles["open_time_ms"][0])
    last_ms = int(candles["open_time_ms"][-1])
    return ATTRIBUTION.format(
        bundle=BUNDLED_FILE,
        rows=len(candles),
        gaps=int(np.count_nonzero(np.diff(candles["open_time_ms"]) != 60_000)),
        first=utc(first_ms),
        last=utc(last_ms),
        first_ms=first_ms,
        last_ms=last_ms,
        csv_name=csv_path.name,
        csv_sha=csv_sha,
        npz_sha=npz_sha,
    )


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the bundled npz and its attribution."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args(argv)

    candles = load_csv(args.csv)[: args.rows]
    npz = npz_bytes(candles)
    csv_sha = hashlib.sha256(args.csv.read_bytes()).hexdigest()
    text = attribution_text(candles, args.csv, csv_sha, hashlib.sha256(npz).hexdigest())
    outputs = {args.out_dir / BUNDLED_FILE: npz, args.out_dir / "ATTRIBUTION.md": text.encode()}
    if args.check:
        stale = [str(p) for p, data in outputs.items() if not p.exists() or p.read_bytes() != data]
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, data in outputs.items():
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
