"""A venue that refuses every order: the strategy backs off, pauses the symbol with an event
and a log line, shows it in status and metrics, and ``pipeline admin resume --symbol``
lets it trade again. A real ``pipeline run`` on the paper venue, whose slippage is set
beyond every limit price so that each order comes back LIMIT_NOT_MARKETABLE."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from harness import pipeline_cmd, pipeline_env
from testkit import eventually

from pipeline.control import EventSubscriber

pytestmark = pytest.mark.slow

CONFIG = """
[risk]
refusal_backoff_base_s = 0.05
refusal_backoff_max_s = 0.2
refusal_pause_after = 3
refusal_pause_cooldown_s = 0.0   # only the operator resumes
refusal_reasons = ["limit_not_marketable"]   # opted in: the refusal this venue gives

[executor]
slippage_bps = 500.0   # beyond the strategy's 20 bps limit: every order is refused
"""


class Run:
    def __init__(self, root: Path, shm: Path) -> None:
        self.data_dir = root / "var"
        self.config = root / "pipeline.toml"
        self.config.write_text(CONFIG)
        self.env = pipeline_env(shm)
        self.popen = subprocess.Popen(
            pipeline_cmd("run", "--data-dir", str(self.data_dir), "--config", str(self.config)),
            env=self.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(pipeline_cmd("admin", "--config", str(self.config), "--data-dir",
                                           str(self.data_dir), *args),
                              env=self.env, capture_output=True, text=True, timeout=30,
                              check=False)

    def strategy(self) -> dict[str, Any]:
        if self.popen.poll() is not None:
            raise AssertionError(self.popen.communicate()[0])
        result = self.admin("status", "--json")
        body: dict[str, Any] = json.loads(result.stdout)["strategy"]
        return body

    def metric(self, name: str) -> float:
        port = (self.data_dir / "run" / "strategy.metrics-port").read_text().strip()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name))


@pytest.fixture
def run(tmp_path: Path, shm_dir: Path) -> Iterator[Run]:
    running = Run(tmp_path, shm_dir)
    try:
        yield running
    finally:
        running.popen.send_signal(signal.SIGINT)
        output = running.popen.communicate(timeout=60)[0]
        assert running.popen.returncode == 0, output


def _paused(run: Run) -> list[dict[str, Any]]:
    return list(run.strategy().get("paused_symbols") or [])


def test_refusals_pause_the_symbol_until_the_operator_resumes_it(run: Run) -> None:
    eventually(lambda: bool(_paused(run)), timeout_s=60, interval_s=0.2)
    (paused,) = _paused(run)
    assert paused["symbol"] == 1
    assert paused["streak"] >= 3
    assert paused["reason"] == "limit_not_marketable"
    assert paused["resumes_in_s"] is None
    assert run.metric("pipeline_strategy_paused_symbols") == 1.0
    assert run.metric('pipeline_strategy_venue_refusals_total{reason="limit_not_marketable"}') \
        >= 3
    # Held back, not sent: the intents count stands still while ticks go on.
    before = run.strategy()
    eventually(lambda: run.strategy()["ticks"] > before["ticks"] + 500, timeout_s=20)
    after = run.strategy()
    assert after["intents"] == before["intents"]
    assert after["risk_rejects"]["symbol_paused"] > before["risk_rejects"]["symbol_paused"]

    log = (run.data_dir / "logs" / "strategy.log").read_text().splitlines()
    pauses = [json.loads(line) for line in log if '"strategy.symbol_paused"' in line]
    assert pauses
    assert {k: pauses[0][k] for k in ("symbol", "streak", "reason")} == \
        {"symbol": 1, "streak": 3, "reason": "limit_not_marketable"}

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    events = EventSubscriber(context, run.data_dir / "run", ["strategy"],
                             topics=["strategy.symbol_"])
    seen: list[tuple[str, dict[str, Any]]] = []

    def resumed() -> bool:
        # Resume until the subscription has caught one (a SUB joins late); the venue keeps
        # refusing, so each resume is soon followed by a pause again.
        result = run.admin("resume", "--symbol", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        seen.extend(events.receive(200))
        return any(topic == "strategy.symbol_resumed" for topic, _ in seen)

    def paused_again() -> bool:
        seen.extend(events.receive(200))
        first = next(i for i, (topic, _) in enumerate(seen) if topic.endswith("resumed"))
        return any(topic == "strategy.symbol_paused" for topic, _ in seen[first:])

    try:
        eventually(resumed, timeout_s=30, interval_s=0.2)
        eventually(paused_again, timeout_s=30)
    finally:
        events.close()
        context.destroy(linger=0)
    resume = next(body for topic, body in seen if topic == "strategy.symbol_resumed")
    assert (resume["symbol"], resume["by"]) == (1, "operator")
    assert run.strategy()["intents"] > after["intents"]  # it traded (and was refused) again
    unknown = run.admin("resume", "--symbol", "DOGE/USDT")
    assert unknown.returncode == 1
    assert "unknown symbol 'DOGE/USDT'" in unknown.stdout
