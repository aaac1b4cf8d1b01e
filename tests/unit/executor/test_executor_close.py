"""The executor closes its venue on shutdown: no Solana worker thread outlives it."""

from __future__ import annotations

import threading
from pathlib import Path

from localnet_kit import make_venue, running_localnet
from testkit import scratch_shm_dir

from pipeline.config import load_config
from pipeline.executor.process import ExecutorService
from pipeline.runtime import Runtime


def _venue_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "solana-venue" and t.is_alive()]


def test_closing_the_executor_stops_the_solana_venue_thread(tmp_path: Path) -> None:
    with running_localnet(tmp_path / "net") as net, scratch_shm_dir() as shm:
        config = load_config(environ={}, overrides={"data_dir": str(tmp_path / "var"),
                                                    "rings": {"shm_dir": str(shm)}})
        runtime = Runtime.build(config, "executor", to_stderr=False)
        try:
            before = set(_venue_threads())
            service = ExecutorService(runtime, venue=make_venue(net))
            started = [t for t in _venue_threads() if t not in before]
            assert len(started) == 1
            service.close()
            assert not started[0].is_alive()
        finally:
            runtime.close()
