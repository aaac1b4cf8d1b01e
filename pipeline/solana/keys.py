"""Solana CLI keypair files: a JSON array of 64 byte values, readable by the owner only.

A key file that group or others may read is refused (a leaked key drains the wallet); the
secret never appears in errors or logs, only the file path and the public key.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from solders.keypair import Keypair

from pipeline.errors import OperationalError


def load_keypair(path: Path) -> Keypair:
    """Read a keypair file; OperationalError if missing, malformed or not private (0600)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise OperationalError(f"keypair file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise OperationalError(
            f"keypair file {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}")
    try:
        values = json.loads(path.read_text())
        if not (isinstance(values, list) and len(values) == 64
                and all(isinstance(v, int) and 0 <= v < 256 for v in values)):
            raise ValueError
        return Keypair.from_bytes(bytes(values))
    except (ValueError, OSError):
        # The message must not echo the content: it is the secret.
        raise OperationalError(f"keypair file {path} is not a Solana CLI keypair "
                               "(a JSON array of 64 byte values)") from None


def write_keypair(path: Path, keypair: Keypair) -> None:
    """Create a keypair file with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(list(bytes(keypair)), handle)
