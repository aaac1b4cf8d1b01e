"""A running pipeline scraped by a real Prometheus: every Grafana panel's query returns data,
every alert rule evaluates cleanly, and no secret reaches the logs or the metrics."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import pipeline_cmd, pipeline_env
from testkit import eventually

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "pipeline-overview.json"
PROCESSES = ("ingest", "strategy", "executor", "ledger")
# Grafana substitutes its own variables before Prometheus sees a query; so do we.
GRAFANA_VARIABLES = {"$__rate_interval": "10s"}
# Panels whose metric exists only with a feature this run does not enable.
NEEDS_BACKUP_TARGET = {"Backup age"}
# Exported by the ledger of a Solana venue only; test_localnet_run reads the same metrics
# from a running ledger's /metrics.
NEEDS_CHAIN_VENUE = {"Chain balances (Solana venues)"}
SECRETS = {
    "PIPELINE__INGEST__LIVE__JUPITER_API_KEY": "jup-SECRET-4f1c9a",
    "PIPELINE__INGEST__LIVE__COINGECKO_API_KEY": "cg-SECRET-77d2e0",
    "PIPELINE__INGEST__LIVE__HERMES_API_KEY": "hermes-SECRET-0b3e51",
}


@dataclass
class Observed:
    prometheus_url: str
    data_dir: Path
    metrics_ports: dict[str, int]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (./dev.sh test installs Debian's package)")
    from testkit import scratch_shm_dir

    tmp = tmp_path_factory.mktemp("observed")
    data_dir = tmp / "var"
    # A tight position limit makes the risk engine reject orders, so reject panels have data.
    with scratch_shm_dir() as shm_dir:
        env = pipeline_env(shm_dir, PIPELINE__RISK__MAX_POSITION="1.0", **SECRETS)
        run = subprocess.Popen(pipeline_cmd("run", "--data-dir", str(data_dir), "--duration",
                                            "300"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        prom = None
        try:
            run_dir = data_dir / "run"
            eventually(lambda: all((run_dir / f"{p}.metrics-port").exists() for p in PROCESSES),
                       timeout_s=60, interval_s=0.1, message="metrics port files")
            ports = {p: int((run_dir / f"{p}.metrics-port").read_text()) for p in PROCESSES}
            config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
            config = config.replace("scrape_interval: 5s", "scrape_interval: 1s")
            config = config.replace("evaluation_interval: 5s", "evaluation_interval: 1s")
            config = config.replace("scrape_timeout: 4s", "scrape_timeout: 1s")
            config = config.replace("rules/*.yml", str(DEPLOY / "prometheus/rules/*.yml"))
            for name, default in zip(PROCESSES, (9101, 9102, 9103, 9104), strict=True):
                config = config.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
            (tmp / "prometheus.yml").write_text(config)
            port = _free_port()
            prom = subprocess.Popen([prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={tmp / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = f"http://127.0.0.1:{port}"
            eventually(lambda: _ready(f"{url}/-/ready"), timeout_s=30, interval_s=0.2,
                       message="prometheus ready")
            yield Observed(url, data_dir, ports)
        finally:
            if prom is not None:
                prom.terminate()
                prom.wait(timeout=30)
            run.send_signal(signal.SIGINT)
            _out, err = run.communicate(timeout=90)
            assert run.returncode == 0, err.decode()[-2000:]


def _panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def _query(observed: Observed, expr: str) -> dict[str, Any]:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    answer: dict[str, Any] = _get_json(
        f"{observed.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return answer


def test_dashboard_uses_fixed_uids_and_no_inputs() -> None:
    text = DASHBOARD.read_text()
    board = json.loads(text)
    assert board["uid"] == "pipeline-overview"
    assert "${DS_" not in text
    assert "__inputs" not in board
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
    assert uids == {"pipeline-prometheus"}
    provisioned = (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: pipeline-prometheus" in provisioned


def test_every_panel_query_returns_data(observed: Observed) -> None:
    pending: dict[str, list[str]] = {}

    def all_panels_have_data() -> bool:
        pending.clear()
        for panel in _panels():
            results = []
            for target in panel["targets"]:
                answer = _query(observed, target["expr"])
                assert answer["status"] == "success", (panel["title"], answer)
                results.append(bool(answer["data"]["result"]))
            if panel["title"] not in NEEDS_BACKUP_TARGET | NEEDS_CHAIN_VENUE \
                    and not any(results):
                pending[panel["title"]] = [t["expr"] for t in panel["targets"]]
        return not pending

    eventually(all_panels_have_data, timeout_s=90, interval_s=1.0,
               message="every panel has data")
    assert not pending, pending


def test_every_alert_rule_evaluates_without_error(observed: Observed) -> None:
    def rules_evaluated() -> bool:
        groups = _get_json(f"{observed.prometheus_url}/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return bool(rules) and all(r["health"] == "ok" for r in rules)

    eventually(rules_evaluated, timeout_s=30, interval_s=0.5, message="rules healthy")
    targets = _get_json(f"{observed.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
    assert {t["labels"]["process"]: t["health"] for t in targets} == dict.fromkeys(PROCESSES,
                                                                                  "up")


def test_no_secret_reaches_the_logs_or_the_metrics(observed: Observed) -> None:
    texts = [path.read_text(errors="replace")
             for path in (observed.data_dir / "logs").glob("*.log*")]
    assert texts, "the run wrote logs"
    for port in observed.metrics_ports.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            texts.append(response.read().decode())
    for secret in SECRETS.values():
        assert not any(secret in text for text in texts), "a secret was written out"
