"""deploy/compose.yaml against the Compose Specification, and the files it wires together.

No container engine runs here, so the compose file is checked against the specification's
JSON schema (tests/data/compose_spec.json, see tests/data/README.md) and for the properties
that keep monitoring alive when the pipeline container restarts. No promtail or Loki binary
exists in the package registries either: their configs are checked for structure. The
healthcheck scripts run for real, the pipeline's probe against a real supervisord.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from supervised import CONF, supervised
from testkit import eventually

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = ROOT / "tests" / "data" / "compose_spec.json"
ACT = DEPLOY / "healthcheck" / "act.sh"
PROBE = DEPLOY / "healthcheck" / "pipeline-probe.sh"
MONITORING = ("prometheus", "alertmanager", "grafana", "loki", "promtail")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = _yaml(DEPLOY / "compose.yaml")
    return data


def _validator() -> jsonschema.protocols.Validator:
    # The file declares draft 7 by a URI spelling ("https://...draft-07/schema") that
    # jsonschema does not map to a draft, so the draft is named here.
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft-07/schema"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_is_valid_against_the_compose_specification(
        compose: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in _validator().iter_errors(compose)]
    assert errors == []


def test_the_schema_is_strict_so_a_pass_means_something(compose: dict[str, Any]) -> None:
    bad = json.loads(json.dumps(compose))
    bad["services"]["pipeline"]["mem_limt"] = "1g"
    bad["services"]["grafana"]["healthcheck"]["intervall"] = "30s"
    assert len(list(_validator().iter_errors(bad))) == 2


def test_no_service_lives_in_another_containers_network_namespace(
        compose: dict[str, Any]) -> None:
    """A container joined to the pipeline's namespace keeps a dead one when the pipeline
    restarts; on the host's stack every listener stays on 127.0.0.1 (see compose.yaml)."""
    services = compose["services"]
    assert set(MONITORING) | {"pipeline"} == set(services)
    for name, service in services.items():
        assert service.get("network_mode") == "host", name
        assert "ports" not in service, f"{name}: ports are ignored with host networking"
    metrics = _toml_section(ROOT / "config" / "example.toml", "metrics")
    assert 'host = "127.0.0.1"' in metrics, "the pipeline's /metrics must stay on localhost"
    listeners = " ".join(compose["services"]["prometheus"]["command"]
                         + compose["services"]["alertmanager"]["command"])
    assert "--web.listen-address=127.0.0.1:9090" in listeners
    assert "--web.listen-address=127.0.0.1:9093" in listeners
    assert "--cluster.listen-address=" in compose["services"]["alertmanager"]["command"]
    assert compose["services"]["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"


def _toml_section(path: Path, name: str) -> str:
    text = path.read_text()
    start = text.index(f"[{name}]")
    end = text.find("\n[", start + 1)
    return text[start:end if end >= 0 else None]


def test_grafana_admin_password_comes_from_a_secret(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    path = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    secret = path.removeprefix("/run/secrets/")
    assert path == f"/run/secrets/{secret}"
    assert secret in grafana["secrets"]
    assert compose["secrets"][secret]["file"] == "./secrets/grafana-admin-password"


def test_every_service_has_a_healthcheck_that_acts(compose: dict[str, Any]) -> None:
    """Compose never restarts an unhealthy container: act.sh stops PID 1 after 3 failures
    and the restart policy starts the container again."""
    for name, service in compose["services"].items():
        check = service["healthcheck"]
        assert check["test"][:5] == ["CMD", "sh", "/healthcheck/act.sh",
                                     "/tmp/healthcheck.failures", "3"], name
        assert "./healthcheck:/healthcheck:ro" in service["volumes"], name
        assert service["restart"] == "unless-stopped", name
    pipeline = compose["services"]["pipeline"]["healthcheck"]["test"]
    assert pipeline[5:] == ["sh", "/healthcheck/pipeline-probe.sh"]


def test_pipeline_container_is_limited_to_1_gb(compose: dict[str, Any]) -> None:
    pipeline = compose["services"]["pipeline"]
    assert pipeline["mem_limit"] == "1g"
    assert pipeline["memswap_limit"] == "1g"


def test_every_mounted_repository_file_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    named = {v.split(":")[0] for s in compose["services"].values()
             for v in s.get("volumes", []) if not v.startswith(".")}
    assert named == set(compose["volumes"])


def test_loki_runs_and_promtail_pushes_to_it(compose: dict[str, Any]) -> None:
    loki = compose["services"]["loki"]
    assert "./loki/loki.yml:/etc/loki/loki.yml:ro" in loki["volumes"]
    assert loki["command"] == ["-config.file=/etc/loki/loki.yml"]
    server = _yaml(DEPLOY / "loki" / "loki.yml")["server"]
    promtail = _yaml(DEPLOY / "promtail" / "promtail.yml")
    assert [c["url"] for c in promtail["clients"]] == [
        f"http://{server['http_listen_address']}:{server['http_listen_port']}/loki/api/v1/push"]
    assert compose["services"]["promtail"]["depends_on"]["loki"]
    assert "pipeline-data:/var/lib/pipeline:ro" in compose["services"]["promtail"]["volumes"]
    [source] = _yaml(DEPLOY / "grafana/provisioning/datasources/loki.yml")["datasources"]
    assert source["url"] == f"http://{server['http_listen_address']}:{server['http_listen_port']}"


def test_loki_config_is_a_single_local_instance_with_retention() -> None:
    config = _yaml(DEPLOY / "loki" / "loki.yml")
    assert config["auth_enabled"] is False
    assert config["server"]["http_listen_address"] == "127.0.0.1"
    assert config["server"]["grpc_listen_address"] == "127.0.0.1"
    common = config["common"]
    assert common["ring"]["kvstore"]["store"] == "inmemory"
    assert common["replication_factor"] == 1
    assert common["storage"]["filesystem"]["chunks_directory"].startswith("/loki/")
    [period] = config["schema_config"]["configs"]
    assert (period["store"], period["object_store"], period["schema"]) == \
        ("tsdb", "filesystem", "v13")
    assert period["index"]["period"] == "24h"  # tsdb requires 24 h index periods
    assert config["limits_config"]["retention_period"] == "720h"
    # Loki 3 refuses to start with retention on and no delete request store.
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"


def _job(promtail: dict[str, Any], name: str) -> dict[str, Any]:
    [job] = [j for j in promtail["scrape_configs"] if j["job_name"] == name]
    return job


def _stage(stages: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [stage] = [s[kind] for s in stages if kind in s]
    return stage


def test_promtail_ships_the_json_logs_with_utc_timestamps() -> None:
    promtail = _yaml(DEPLOY / "promtail" / "promtail.yml")
    assert promtail["server"]["http_listen_address"] == "127.0.0.1"
    assert promtail["server"]["grpc_listen_address"] == "127.0.0.1"
    assert promtail["positions"]["filename"].startswith("/var/lib/promtail/")
    job = _job(promtail, "pipeline")
    [static] = job["static_configs"]
    assert static["labels"]["__path__"] == \
        "/var/lib/pipeline/*/logs/{ingest,strategy,executor,ledger,run}.log"
    stages = job["pipeline_stages"]
    assert _stage(stages, "timestamp") == {"source": "time", "format": "RFC3339Nano"}
    assert set(_stage(stages, "labels")) == {"level", "process", "env"}


def test_promtail_ships_the_supervisord_stderr_logs() -> None:
    promtail = _yaml(DEPLOY / "promtail" / "promtail.yml")
    job = _job(promtail, "pipeline-stderr")
    [static] = job["static_configs"]
    glob = static["labels"]["__path__"]
    assert glob == "/var/lib/pipeline/*/logs/*.stderr.log"
    # supervisord writes <program>.stderr.log into $PIPELINE_DATA_DIR/logs (the Dockerfile's
    # data dir is /var/lib/pipeline/paper); its rotated copies (.1, .2) are not matched.
    conf = CONF.read_text()
    assert "stdout_logfile = %(ENV_PIPELINE_DATA_DIR)s/logs/%(program_name)s.stderr.log" in conf
    path = "/var/lib/pipeline/paper/logs/ledger.stderr.log"
    assert fnmatch.fnmatch(path, glob)
    assert not fnmatch.fnmatch(path + ".1", glob)

    stages = job["pipeline_stages"]
    regex = _stage(stages, "regex")
    assert regex["source"] == "filename"
    match = re.search(regex["expression"], path)
    assert match is not None
    assert match["process"] == "ledger"
    firstline = re.compile(_stage(stages, "multiline")["firstline"])
    entry_starts = ["Traceback (most recent call last):", '{"time": "2026-11-29T09:10:34.893Z"}']
    continuations = ['  File "/opt/pipeline/x.py", line 3, in <module>',
                     "ValueError: bad config", "    raise ValueError"]
    assert all(firstline.search(line) for line in entry_starts)
    assert not any(firstline.search(line) for line in continuations)
    json_lines = _stage(stages, "match")
    assert json_lines["selector"] == '{job="pipeline-stderr"} |~ "^\\\\{"'
    assert _stage(json_lines["stages"], "timestamp") == \
        {"source": "time", "format": "RFC3339Nano"}


def _act(tmp_path: Path, target: subprocess.Popen[bytes], *probe: str
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEALTHCHECK_TARGET_PID": str(target.pid)}
    return subprocess.run(["sh", str(ACT), str(tmp_path / "failures"), "3", *probe], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def target() -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in for a container's PID 1."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_act_stops_the_main_process_after_three_failures_in_a_row(
        tmp_path: Path, target: subprocess.Popen[bytes]) -> None:
    assert [_act(tmp_path, target, "false").returncode for _ in range(2)] == [1, 1]
    assert _act(tmp_path, target, "true").returncode == 0  # a success starts the count again
    assert [_act(tmp_path, target, "false").returncode for _ in range(2)] == [1, 1]
    assert target.poll() is None
    third = _act(tmp_path, target, "false")
    assert third.returncode == 1
    assert "SIGTERM" in third.stderr
    assert target.wait(timeout=10) == -signal.SIGTERM


def test_act_leaves_alone_what_a_restart_would_not_fix(
        tmp_path: Path, target: subprocess.Popen[bytes]) -> None:
    for _ in range(5):
        result = _act(tmp_path, target, "sh", "-c", "exit 2")
        assert result.returncode == 1
        assert "would not help" in result.stderr
    assert target.poll() is None


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(PROBE)], env={**env, "SUPERVISOR_CONF": str(CONF)},
                          capture_output=True, text=True, timeout=60, check=False)


def test_pipeline_probe_tells_hung_from_down_under_real_supervisord(
        tmp_path: Path, shm_dir: Path) -> None:
    with supervised(tmp_path, shm_dir, "") as sup:
        eventually(lambda: _probe(sup.env).returncode == 0, timeout_s=90, interval_s=1.0,
                   message="the probe passes once all four answer")
        # A hung process: supervisor still says RUNNING, the control plane gets no answer.
        strategy = sup.pid("strategy")
        os.kill(strategy, signal.SIGSTOP)
        try:
            hung = _probe(sup.env)
        finally:
            os.kill(strategy, signal.SIGCONT)
        assert hung.returncode == 1, hung.stdout + hung.stderr
        assert "DOWN" in hung.stdout
        # A process supervisor has stopped (as after exit 2): not the container's to fix.
        assert sup.ctl("stop", "pipeline:ingest").returncode == 0
        down = _probe(sup.env)
        assert down.returncode == 2, down.stdout + down.stderr
