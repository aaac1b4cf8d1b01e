"""Solana CLI keypair files: private (0600) or refused, and the secret never echoed."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from solders.keypair import Keypair

from pipeline.errors import OperationalError
from pipeline.solana.keys import load_keypair, write_keypair


def test_a_written_keypair_is_private_and_loads_back(tmp_path: Path) -> None:
    keypair = Keypair()
    path = tmp_path / "keys" / "trader.json"
    write_keypair(path, keypair)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keypair(path).pubkey() == keypair.pubkey()
    assert json.loads(path.read_text()) == list(bytes(keypair)), "Solana CLI format"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_keypair_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "trader.json"
    write_keypair(path, Keypair())
    path.chmod(mode)
    with pytest.raises(OperationalError, match=re.escape(f"chmod 600 {path}")):
        load_keypair(path)


def test_a_malformed_keypair_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = list(bytes(Keypair()))[:63]  # one byte short
    path = tmp_path / "trader.json"
    path.write_text(json.dumps(secret))
    path.chmod(0o600)
    with pytest.raises(OperationalError) as info:
        load_keypair(path)
    assert str(secret[5]) + ", " + str(secret[6]) not in str(info.value)
    assert "JSON array of 64 byte values" in str(info.value)


def test_a_missing_keypair_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(OperationalError, match=r"missing\.json"):
        load_keypair(tmp_path / "missing.json")


def test_write_keypair_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "trader.json"
    write_keypair(path, Keypair())
    with pytest.raises(FileExistsError):
        write_keypair(path, Keypair())
