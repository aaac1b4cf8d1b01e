"""A running pipeline scraped by a real Prometheus: every Grafana panel's query returns data,
every status panel reads healthy and paints bad states red, every series carries the
environment, every alert rule evaluates cleanly, and no secret reaches the logs or metrics.

The run has backups on (to a moto S3 server on 127.0.0.1 started here) and its clock
checked against an SNTP responder started here, so those panels have data too.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from harness import pipeline_cmd, pipeline_env
from testkit import eventually

from pipeline.sntp import to_ntp

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "pipeline-overview.json"
PROCESSES = ("ingest", "strategy", "executor", "ledger")
ENVIRONMENT = "paper"
# Grafana substitutes its own variables before Prometheus sees a query; so do we ("All"
# instances).
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$environment": ENVIRONMENT,
                     "$instance": ".*"}
# Exported by the ledger of a Solana venue only; test_localnet_run reads the same metrics
# from a running ledger's /metrics.
NEEDS_CHAIN_VENUE = {"Chain balances (Solana venues)", "Chain watch (Solana venues)"}
SECRETS = {
    "PIPELINE__INGEST__LIVE__JUPITER_API_KEY": "jup-SECRET-4f1c9a",
    "PIPELINE__INGEST__LIVE__COINGECKO_API_KEY": "cg-SECRET-77d2e0",
    "PIPELINE__INGEST__LIVE__HERMES_API_KEY": "hermes-SECRET-0b3e51",
}
BACKUP_INTERVAL_S = 2.0
CLOCK_INTERVAL_S = 1.0


@dataclass
class Observed:
    prometheus_url: str
    data_dir: Path
    metrics_ports: dict[str, int]
    ntp: NtpResponder


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


class NtpResponder:
    """Answers SNTP requests with our own clock (a good clock) and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            while True:
                data, peer = self.sock.recvfrom(512)
                now = to_ntp(time.time())
                reply = bytearray(48)
                reply[0] = (4 << 3) | 4  # version 4, server mode, leap 0
                reply[1] = 2  # stratum
                struct.pack_into("!IIIIII", reply, 24, *struct.unpack_from("!II", data, 40),
                                 *now, *now)
                self.sock.sendto(bytes(reply), peer)
                self.requests += 1
        except OSError:
            return  # closed

    def close(self) -> None:
        self.sock.close()


def _tail(path: Path, limit: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-limit:]


def _until(condition: Callable[[], bool], run: subprocess.Popen[bytes], stderr: Path, *,
           timeout_s: float, message: str, interval_s: float = 0.2) -> None:
    """``eventually``, failing at once (with the run's stderr tail) if the run has ended."""
    def check() -> bool:
        if run.poll() is not None:
            raise AssertionError(f"pipeline run exited ({run.returncode}) while waiting for "
                                 f"{message}; stderr tail:\n{_tail(stderr)}")
        return condition()
    try:
        eventually(check, timeout_s=timeout_s, interval_s=interval_s, message=message)
    except AssertionError as exc:
        if "stderr tail" in str(exc):
            raise
        raise AssertionError(f"{exc}; pipeline stderr tail:\n{_tail(stderr)}") from None


def _prometheus_config(ports: dict[str, int], prom_port: int) -> str:
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    for old, new in (("scrape_interval: 5s", "scrape_interval: 1s"),
                     ("evaluation_interval: 5s", "evaluation_interval: 1s"),
                     ("scrape_timeout: 4s", "scrape_timeout: 1s"),
                     ("rules/*.yml", str(DEPLOY / "prometheus/rules/*.yml")),
                     ("127.0.0.1:9090", f"127.0.0.1:{prom_port}")):
        assert old in config, old
        config = config.replace(old, new)
    for name, default in zip(PROCESSES, (9101, 9102, 9103, 9104), strict=True):
        config = config.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
    # The environment is the one word an operator sets (see the file's header).
    line = "\n        replacement: paper"
    assert config.count(line) == 1
    return config.replace(line, f"\n        replacement: {ENVIRONMENT}")


@pytest.fixture(scope="module")
def s3_bucket() -> Iterator[tuple[str, dict[str, str]]]:
    """A moto S3 server on 127.0.0.1 with a fresh bucket: (endpoint URL, env for boto3)."""
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port,
                                              verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    bucket = f"ledger-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=bucket)
    try:
        yield url, {**aws, "PIPELINE__LEDGER__BACKUP__BUCKET": bucket}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory,
             s3_bucket: tuple[str, dict[str, str]]) -> Iterator[Observed]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (./dev.sh test installs Debian's package)")
    from testkit import scratch_shm_dir

    tmp = tmp_path_factory.mktemp("observed")
    data_dir = tmp / "var"
    stderr_path = tmp / "run.stderr"
    s3_url, s3_env = s3_bucket
    ntp = NtpResponder()
    key = base64.b64encode(os.urandom(32)).decode()
    extra = {
        # A tight position limit makes the risk engine reject orders: reject panels have data.
        "PIPELINE__RISK__MAX_POSITION": "1.0",
        "PIPELINE__LEDGER__BACKUP__ENABLED": "true",
        "PIPELINE__LEDGER__BACKUP__ENDPOINT_URL": f'"{s3_url}"',
        "PIPELINE__LEDGER__BACKUP__INCREMENT_INTERVAL_S": str(BACKUP_INTERVAL_S),
        "PIPELINE_BACKUP_KEYS": f"observability={key}",
        "PIPELINE__CLOCK__SERVERS": f'["{ntp.address}"]',
        "PIPELINE__CLOCK__CHECK_INTERVAL_S": str(CLOCK_INTERVAL_S),
        **s3_env, **SECRETS,
    }
    with scratch_shm_dir() as shm_dir, stderr_path.open("wb") as stderr:
        run = subprocess.Popen(pipeline_cmd("run", "--data-dir", str(data_dir), "--duration",
                                            "300"), env=pipeline_env(shm_dir, **extra),
                               stdout=subprocess.DEVNULL, stderr=stderr)
        prom: subprocess.Popen[bytes] | None = None
        try:
            run_dir = data_dir / "run"
            _until(lambda: all((run_dir / f"{p}.metrics-port").exists() for p in PROCESSES),
                   run, stderr_path, timeout_s=90, message="metrics port files")
            ports = {p: int((run_dir / f"{p}.metrics-port").read_text()) for p in PROCESSES}
            prom_port = _free_port()
            (tmp / "prometheus.yml").write_text(_prometheus_config(ports, prom_port))
            with (tmp / "prometheus.log").open("wb") as prom_log:
                prom = subprocess.Popen(
                    [prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                     f"--storage.tsdb.path={tmp / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"],
                    stdout=subprocess.DEVNULL, stderr=prom_log)
            url = f"http://127.0.0.1:{prom_port}"
            _until(lambda: _ready(f"{url}/-/ready"), run, stderr_path, timeout_s=60,
                   message="prometheus ready")
            yield Observed(url, data_dir, ports, ntp)
        finally:
            if prom is not None:
                prom.terminate()
                prom.wait(timeout=30)
            ntp.close()
            _stop_run(run, stderr_path, stderr)


def _stop_run(run: subprocess.Popen[bytes], stderr_path: Path, stderr: IO[bytes]) -> None:
    """SIGINT, then wait; a run that does not stop is killed, and its stderr is shown."""
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
    try:
        run.wait(timeout=90)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()
        raise AssertionError(f"pipeline run did not stop in 90 s; stderr tail:\n"
                             f"{_tail(stderr_path)}") from None
    stderr.flush()
    assert run.returncode == 0, f"pipeline run exited {run.returncode}; stderr tail:\n" \
                                f"{_tail(stderr_path)}"


def _board() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def _panels(kind: str | None = None) -> list[dict[str, Any]]:
    return [p for p in _board()["panels"]
            if p["type"] != "row" and (kind is None or p["type"] == kind)]


def _query(observed: Observed, expr: str) -> dict[str, Any]:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    answer: dict[str, Any] = _get_json(
        f"{observed.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    return answer


def _values(observed: Observed, expr: str) -> list[float]:
    return [float(r["value"][1]) for r in _query(observed, expr)["data"]["result"]]


def _color(steps: list[dict[str, Any]], value: float | None) -> str:
    """The color Grafana gives ``value`` (None: no data, the base step)."""
    color = str(steps[0]["color"])
    for step in steps[1:]:
        if value is not None and value >= step["value"]:
            color = str(step["color"])
    return color


def test_dashboard_uses_fixed_uids_and_no_inputs() -> None:
    text = DASHBOARD.read_text()
    board = _board()
    assert board["uid"] == "pipeline-overview"
    assert "${DS_" not in text
    assert "__inputs" not in board
    uids = {t["datasource"]["uid"] for p in _panels() for t in p["targets"]}
    uids |= {v["datasource"]["uid"] for v in board["templating"]["list"]}
    assert uids == {"pipeline-prometheus"}
    provisioned = (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: pipeline-prometheus" in provisioned


def test_every_stat_panel_paints_zero_unknown_and_no_data_red() -> None:
    stats = _panels("stat")
    assert len(stats) >= 8
    for panel in stats:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None, panel["title"]
        for value in (None, 0.0, -1.0):
            assert _color(steps, value) == "red", (panel["title"], value)
        assert _color(steps, 1.0) == "green", panel["title"]
        mappings = panel["fieldConfig"]["defaults"]["mappings"]
        shown = {v: m["color"] for mapping in mappings if mapping["type"] == "value"
                 for v, m in mapping["options"].items()}
        assert shown == {"1": "green", "0": "red", "-1": "red"}, panel["title"]
        specials = [m["options"] for m in mappings if m["type"] == "special"]
        assert [(s["match"], s["result"]["color"]) for s in specials] == [("null+nan", "red")], \
            panel["title"]  # no data is red by mapping too, not only by the base step


def test_status_panels_sit_at_the_top() -> None:
    lowest_stat = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in _panels("stat"))
    highest_other = min(p["gridPos"]["y"] for p in _panels() if p["type"] != "stat")
    assert lowest_stat <= highest_other


def test_every_query_is_scoped_by_environment_and_instance() -> None:
    variables = {v["name"] for v in _board()["templating"]["list"]}
    assert variables == {"environment", "instance"}
    selector = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?(?=\s*[\[)*/+\- <>=]|$)")
    for panel in _panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for name, matchers in selector.findall(expr):
                if name.startswith(("pipeline_", "process_")) or name == "up":
                    assert matchers, (panel["title"], name, "without a selector")
                    assert 'environment="$environment"' in matchers, (panel["title"], expr)
                    assert 'instance=~"$instance"' in matchers, (panel["title"], expr)


def test_every_panel_query_returns_data(observed: Observed) -> None:
    pending: dict[str, list[str]] = {}

    def all_panels_have_data() -> bool:
        pending.clear()
        for panel in _panels():
            results = [bool(_query(observed, t["expr"])["data"]["result"])
                       for t in panel["targets"]]
            if panel["title"] not in NEEDS_CHAIN_VENUE and not any(results):
                pending[panel["title"]] = [t["expr"] for t in panel["targets"]]
        return not pending

    eventually(all_panels_have_data, timeout_s=120, interval_s=1.0,
               message="every panel has data")
    assert not pending, pending


def test_every_status_panel_reads_healthy_in_a_healthy_run(observed: Observed) -> None:
    """Trading on, clock checked, backups on and fresh: every status panel is green."""
    unhealthy: dict[str, list[float]] = {}

    def all_green() -> bool:
        unhealthy.clear()
        for panel in _panels("stat"):
            values = [v for t in panel["targets"] for v in _values(observed, t["expr"])]
            if not values or any(v != 1.0 for v in values):
                unhealthy[panel["title"]] = values
        return not unhealthy

    eventually(all_green, timeout_s=90, interval_s=1.0, message="status panels all 1")
    assert not unhealthy, unhealthy


def test_feeds_backups_and_clock_are_measured(observed: Observed) -> None:
    def measured() -> bool:
        uploads = _values(observed, "sum(pipeline_backup_uploads_total)")
        return (bool(uploads) and uploads[0] >= 2  # the snapshot and an increment
                and observed.ntp.requests >= 3)  # at start, then periodically
    eventually(measured, timeout_s=60, interval_s=0.5, message="backups and clock checks")
    (last_tick,) = _values(observed, 'pipeline_feed_last_tick_timestamp_seconds'
                                     '{source="replay"}')
    assert time.time() - last_tick < 30
    (ticks,) = _values(observed, "pipeline_strategy_ticks_total")
    assert ticks > 0
    (offset,) = _values(observed, "pipeline_clock_offset_seconds")
    assert abs(offset) < 0.5
    starts = {r["metric"]["process"] for r in _query(
        observed, 'process_start_time_seconds{job="pipeline"}')["data"]["result"]}
    assert starts == set(PROCESSES)


def test_every_series_carries_the_environment_and_the_target_process(
        observed: Observed) -> None:
    eventually(lambda: bool(_values(observed, 'count(up{job="pipeline"} == 1) == 4')),
               timeout_s=30, interval_s=0.5, message="all pipeline targets up")
    unlabelled = _query(observed, '{__name__=~".+", job!="", environment=""}')["data"]["result"]
    assert unlabelled == [], sorted({r["metric"]["__name__"] for r in unlabelled})
    assert _values(observed, f'count({{__name__=~".+", environment="{ENVIRONMENT}"}})')
    clashing = _query(observed, '{__name__=~".+", exported_process!=""}')["data"]["result"]
    assert clashing == [], sorted({r["metric"]["__name__"] for r in clashing})


def test_recorded_series_keep_the_environment(observed: Observed) -> None:
    """Recording rules must aggregate ``by (environment, ...)``: a figure without it cannot
    be told apart, or routed, by environment."""
    eventually(lambda: bool(_values(observed, 'count({__name__=~".+:.+"})')), timeout_s=30,
               interval_s=0.5, message="recording rules evaluated")
    unlabelled = _query(observed, '{__name__=~".+:.+", environment=""}')["data"]["result"]
    assert unlabelled == [], sorted({r["metric"]["__name__"] for r in unlabelled})


def test_every_alert_rule_evaluates_without_error(observed: Observed) -> None:
    def rules_evaluated() -> bool:
        groups = _get_json(f"{observed.prometheus_url}/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return bool(rules) and all(r["health"] == "ok" for r in rules)

    eventually(rules_evaluated, timeout_s=30, interval_s=0.5, message="rules healthy")

    def scraped() -> dict[str, str]:
        targets = _get_json(f"{observed.prometheus_url}/api/v1/targets")["data"]
        return {t["labels"]["process"]: t["health"] for t in targets["activeTargets"]}

    eventually(lambda: all(scraped().get(p) == "up" for p in (*PROCESSES, "prometheus")),
               timeout_s=30, interval_s=0.5, message="pipeline and prometheus scraped")
    # No Alertmanager runs here: its target exists (and is down), labelled like the rest.
    assert set(scraped()) == {*PROCESSES, "prometheus", "alertmanager"}


def test_no_secret_reaches_the_logs_or_the_metrics(observed: Observed) -> None:
    texts = [path.read_text(errors="replace")
             for path in (observed.data_dir / "logs").glob("*.log*")]
    assert texts, "the run wrote logs"
    for port in observed.metrics_ports.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            texts.append(response.read().decode())
    for secret in SECRETS.values():
        assert not any(secret in text for text in texts), "a secret was written out"
