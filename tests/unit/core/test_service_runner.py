"""The service runner's phases, seen from outside: a tiny service in a real process, its
heartbeats, its log and its exit code; SIGTERM drains, a second SIGTERM forces exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from testkit import eventually

from pipeline.config import PipelineConfig, load_config
from pipeline.control import EventSubscriber
from pipeline.errors import EXIT_CRASH, EXIT_OK
from pipeline.metrics import STATES
from pipeline.service import Phase

# The child: a service with nothing to do whose drain finishes once a file exists, so the
# test decides how long draining lasts. It prints the phase metrics show while starting.
CHILD = """
import sys
from pathlib import Path
from pipeline.config import load_config
from pipeline.runtime import Runtime
from pipeline.service import Service, run_service

work, shm = sys.argv[1], sys.argv[2]
release = Path(work) / "release"

class Tiny(Service):
    def __init__(self, runtime):
        starting = runtime.registry.get_sample_value("pipeline_process_state",
                                                     {"state": "starting"})
        print(f"starting={starting}", flush=True)

    def step(self):
        return False

    def idle_timeout_s(self):
        return 0.01

    def drain(self):
        return release.exists()

config = load_config(None, environ={}, overrides={
    "data_dir": work, "rings": {"shm_dir": shm},
    "run": {"heartbeat_interval_s": 0.05, "stop_timeout_s": 30.0},
    "metrics": {"ports": {"ingest": 0}}})
sys.exit(run_service(Runtime.build(config, "ingest", to_stderr=False), Tiny))
"""


def test_phase_values_are_the_states_metrics_and_heartbeats_report() -> None:
    assert tuple(p.value for p in Phase) == STATES


class Child:
    def __init__(self, work: Path, shm: Path, config: PipelineConfig) -> None:
        self.config = config
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        config.paths.run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventSubscriber(self.context, config.paths.run_dir, ["ingest"],
                                      topics=["heartbeat."])
        self.states: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(work), str(shm)],
                                     stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})

    def saw(self, state: str) -> bool:
        for _topic, body in self.events.receive(10):
            if not self.states or self.states[-1] != body["state"]:
                self.states.append(body["state"])
        return state in self.states

    def log_events(self) -> list[dict[str, Any]]:
        path = self.config.paths.log_dir / "ingest.log"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.events.close()
        self.context.destroy(linger=0)


@pytest.fixture
def child(tmp_path: Path, shm_dir: Path) -> Iterator[Child]:
    work = tmp_path / "var"
    config = load_config(None, environ={}, overrides={"data_dir": str(work),
                                                      "rings": {"shm_dir": str(shm_dir)}})
    running = Child(work, shm_dir, config)
    try:
        yield running
    finally:
        running.close()


def test_sigterm_drains_then_stops_with_phases_in_order(child: Child) -> None:
    assert child.proc.stdout is not None
    assert child.proc.stdout.readline().strip() == "starting=1.0"
    eventually(lambda: child.saw("running"), timeout_s=20, message="running heartbeats")
    child.proc.send_signal(signal.SIGTERM)
    eventually(lambda: child.saw("draining"), timeout_s=10, message="draining heartbeats")
    (Path(child.config.paths.data_dir) / "release").touch()
    assert child.proc.wait(20) == EXIT_OK
    assert child.states == ["running", "draining"]
    events = [e for e in child.log_events() if e.get("event", "").startswith("process.")]
    assert [e["event"] for e in events] == ["process.started", "process.draining",
                                           "process.stopped"]
    assert events[-1]["exit_code"] == EXIT_OK
    assert events[-1]["final"]["state"] == "stopped"


def test_a_second_sigterm_while_draining_forces_exit(child: Child) -> None:
    eventually(lambda: child.saw("running"), timeout_s=20, message="running heartbeats")
    child.proc.send_signal(signal.SIGTERM)
    eventually(lambda: child.saw("draining"), timeout_s=10, message="draining heartbeats")
    child.proc.send_signal(signal.SIGTERM)  # the drain never finishes on its own here
    assert child.proc.wait(20) == EXIT_CRASH
    assert any(e.get("event") == "process.force_exit" for e in child.log_events())
