"""The shared kill flag: what the ledger writes, the executor reads at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.killflag import KillFlag, flag_path


def test_unknown_until_written_then_seen_by_another_handle(shm_dir: Path) -> None:
    path = flag_path(shm_dir, "pl-paper-test")
    executor = KillFlag(path)
    assert executor.enabled() is None  # no ledger yet: trading stays off
    ledger = KillFlag(path)
    ledger.set(True)
    assert executor.enabled() is True
    ledger.set(False)
    assert executor.enabled() is False
    assert path.stat().st_mode & 0o777 == 0o600
    ledger.close()
    restarted = KillFlag(path)  # a restarted ledger finds the same word
    assert restarted.enabled() is False
    restarted.close()
    executor.close()


def test_a_foreign_file_is_refused(shm_dir: Path) -> None:
    path = shm_dir / "not-a-flag"
    path.write_bytes(b"x" * 8192)
    with pytest.raises(ValueError, match="not a kill-switch segment"):
        KillFlag(path)
