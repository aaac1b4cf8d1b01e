"""The localnet's manifest: how the executor finds a running localnet and its accounts.

Written atomically to ``<run_dir>/localnet.json`` once the server listens (its presence
means ready) and removed on an orderly stop.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Final

NAME: Final = "localnet.json"


@dataclasses.dataclass(frozen=True)
class Manifest:
    url: str  # JSON-RPC at "/", Jupiter-shaped API under /swap
    trader_keypair: str
    trader: str
    maker: str
    mints: dict[str, tuple[str, int]]  # asset -> (mint, decimals)
    pid: int

    def write(self, run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, run_dir: Path) -> Manifest | None:
        """The manifest of the localnet serving ``run_dir``, or None if none is running."""
        try:
            data: dict[str, Any] = json.loads((run_dir / NAME).read_text())
        except (OSError, ValueError):
            return None
        data["mints"] = {k: (str(v[0]), int(v[1])) for k, v in data["mints"].items()}
        return cls(**data)
