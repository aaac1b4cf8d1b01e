"""deploy/alertmanager/alertmanager.yml run by the real Alertmanager, its receivers pointed at
an HTTP server on 127.0.0.1: what PagerDuty, the team chat and the dead-man's switch receive,
and which alerts the inhibition rules hide."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import eventually

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"


@dataclass
class Received:
    """Notification bodies by path, as the receivers' services would get them."""

    bodies: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, body: Any) -> None:
        with self.lock:
            self.bodies.setdefault(path, []).append(body)

    def get(self, path: str) -> list[Any]:
        with self.lock:
            return list(self.bodies.get(path, []))


@dataclass
class Running:
    url: str
    received: Received


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sink(received: Received) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.add(self.path, json.loads(self.rfile.read(length) or b"null"))
            self.send_response(202)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def _local_config(tmp_path: Path, sink_url: str) -> Path:
    """The shipped config with only the service addresses, secret files and waits changed."""
    config = yaml.safe_load(CONFIG.read_text())
    (tmp_path / "pd-key").write_text("R0UT1NGKEY0000000000000000000000")
    (tmp_path / "slack-url").write_text(f"{sink_url}/slack")
    for receiver in config["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            pd["routing_key_file"] = str(tmp_path / "pd-key")
            pd["url"] = f"{sink_url}/pagerduty"
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(tmp_path / "slack-url")
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{sink_url}/deadmansswitch"
    config["route"]["group_wait"] = "1s"  # 10 s in production: the test need not wait
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Running]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("alertmanager not installed (./dev.sh test installs Debian's package)")
    received = Received()
    sink = _sink(received)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    port = _free_port()
    config = _local_config(tmp_path, f"http://127.0.0.1:{sink.server_address[1]}")
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "alertmanager.log").open("w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            eventually(lambda: _ready(url), timeout_s=20, interval_s=0.1,
                       message="alertmanager ready")
            yield Running(url, received)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            sink.shutdown()
            sink.server_close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _alert(alertname: str, environment: str, severity: str, process: str, summary: str,
           ) -> dict[str, Any]:
    port = {"ingest": 9101, "strategy": 9102, "executor": 9103, "ledger": 9104}[process]
    return {
        "labels": {"alertname": alertname, "environment": environment, "severity": severity,
                   "job": "pipeline", "process": process, "instance": f"127.0.0.1:{port}"},
        "annotations": {"summary": summary, "runbook": f"runbook of {alertname}"},
        "startsAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    }


def _post(url: str, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        result: list[dict[str, Any]] = json.loads(response.read())
        return result


def test_mainnet_critical_pages_once_with_every_summary(alertmanager: Running) -> None:
    _post(alertmanager.url, [
        _alert("ProcessDown", "mainnet", "critical", "executor", "executor is not serving metrics"),
        _alert("ProcessDown", "mainnet", "critical", "strategy",
               "strategy is crash-looping: 3 restarts in 15 minutes"),
        _alert("ProcessDown", "devnet", "critical", "ledger", "ledger is not serving metrics"),
        _alert("Watchdog", "mainnet", "none", "ledger", "alerting pipeline is alive"),
    ])
    received = alertmanager.received

    def delivered() -> bool:
        return bool(received.get("/pagerduty")) and len(received.get("/slack")) >= 2 \
            and bool(received.get("/deadmansswitch"))

    eventually(delivered, timeout_s=20, interval_s=0.1, message="notifications delivered")
    pages = received.get("/pagerduty")
    assert len(pages) == 1  # both mainnet processes in one incident; devnet never pages
    event = pages[0]
    assert event["event_action"] == "trigger"
    summary = event["payload"]["summary"]
    assert summary.startswith("[mainnet] ProcessDown:")
    assert "executor is not serving metrics" in summary
    assert "strategy is crash-looping: 3 restarts in 15 minutes" in summary
    assert "ledger" not in summary
    assert event["payload"]["custom_details"]["firing"] == "2"
    chat = " ".join(json.dumps(body) for body in received.get("/slack"))
    assert "[devnet] ProcessDown" in chat
    assert "[mainnet] ProcessDown" in chat
    assert "Watchdog" not in chat
    watchdog = received.get("/deadmansswitch")[0]
    assert watchdog["commonLabels"]["alertname"] == "Watchdog"


def test_process_down_hides_only_its_own_processes_alerts(alertmanager: Running) -> None:
    _post(alertmanager.url, [
        _alert("ProcessDown", "mainnet", "critical", "ingest", "ingest is not serving metrics"),
        _alert("FeedsAllStale", "mainnet", "critical", "ingest", "no feed has delivered"),
        _alert("ProcessNotHeartbeating", "mainnet", "critical", "strategy",
               "strategy has not heartbeated for 10s"),
        _alert("FeedsAllStale", "devnet", "critical", "ingest", "no feed has delivered"),
    ])

    def inhibited() -> dict[tuple[str, str, str], bool]:
        return {(a["labels"]["alertname"], a["labels"]["environment"], a["labels"]["process"]):
                bool(a["status"]["inhibitedBy"]) for a in _alerts(alertmanager.url)}

    expected = {
        ("ProcessDown", "mainnet", "ingest"): False,
        ("FeedsAllStale", "mainnet", "ingest"): True,  # same environment and instance
        ("ProcessNotHeartbeating", "mainnet", "strategy"): False,  # another process
        ("FeedsAllStale", "devnet", "ingest"): False,  # another environment
    }
    eventually(lambda: inhibited() == expected, timeout_s=20, interval_s=0.2,
               message="inhibition applied")
