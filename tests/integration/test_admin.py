"""`pipeline admin` as a subprocess against a running `pipeline run`: each issue-3 item."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import pipeline_cmd, pipeline_env, query
from solders.keypair import Keypair
from testkit import eventually

pytestmark = pytest.mark.slow
STOP_BUDGET_NS = 50_000_000  # the executor stops sending within 50 ms of a disable


@dataclass
class Pipeline:
    data_dir: Path
    config: Path
    env: dict[str, str]
    keys: list[Path]
    outsider: Path
    popen: subprocess.Popen[str]

    @property
    def database(self) -> Path:
        return self.data_dir / "ledger-paper.sqlite"

    def admin(self, *args: str, timeout_s: float = 30, env: dict[str, str] | None = None,
              with_config: bool = True) -> subprocess.CompletedProcess[str]:
        """``pipeline admin [--env E] ARGS`` (options before the admin command go first)."""
        split = 2 if args[:1] == ("--env",) else 0
        config = ["--config", str(self.config)] if with_config else []
        return subprocess.run(pipeline_cmd("admin", *args[:split], *config, "--data-dir",
                                           str(self.data_dir), *args[split:]),
                              env=env or self.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def status(self) -> dict[str, Any]:
        result = self.admin("status", "--json")
        body: dict[str, Any] = json.loads(result.stdout)
        return body


def _keypair_file(path: Path) -> Path:
    path.write_text(json.dumps(list(bytes(Keypair()))))
    path.chmod(0o600)
    return path


def _pubkey(path: Path) -> str:
    return str(Keypair.from_bytes(bytes(json.loads(path.read_text()))).pubkey())


CONFIG = """
[risk]
max_orders_per_s = 1000.0
max_position = 10.0
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("admin")
    shm = Path("/dev/shm") / f"pltest-admin-{os.getpid()}"
    shm.mkdir(mode=0o700)
    keys = [_keypair_file(root / f"signer{i}.json") for i in range(3)]
    config = root / "pipeline.toml"
    config.write_text(CONFIG)
    env = pipeline_env(shm, PIPELINE__CONTROL__SIGNERS=json.dumps([_pubkey(k) for k in keys]),
                       PIPELINE__CONTROL__ENABLE_THRESHOLD="2")
    env.pop("PIPELINE__RISK__MAX_ORDERS_PER_S")  # from the file, so reload can change it
    # The launcher must not stop the run while a test freezes a process on purpose.
    run_env = dict(env, PIPELINE__RUN__HEARTBEAT_TIMEOUT_S="60",
                   PIPELINE__RUN__HANG_TIMEOUT_S="60")
    data_dir = root / "var"
    popen = subprocess.Popen(pipeline_cmd("run", "--data-dir", str(data_dir), "--config",
                                          str(config)), env=run_env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    running = Pipeline(data_dir, config, env, keys, _keypair_file(root / "outsider.json"),
                       popen)

    def all_running() -> bool:
        if popen.poll() is not None:
            raise AssertionError(popen.communicate()[0])
        result = running.admin("status", "--json")
        return result.returncode == 0 and all(
            p.get("state") == "running" for p in json.loads(result.stdout).values())

    eventually(all_running, timeout_s=60, interval_s=0.2)
    yield running
    popen.send_signal(signal.SIGINT)
    output = popen.communicate(timeout=60)[0]
    assert popen.returncode == 0, output
    for leftover in shm.iterdir():
        leftover.unlink()
    shm.rmdir()


def test_status_is_one_table_of_four_running_processes(pipeline: Pipeline) -> None:
    result = pipeline.admin("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["process", "state", "pid", "uptime", "config", "lag"]
    assert sorted(line.split()[0] for line in lines[1:5]) == \
        ["executor", "ingest", "ledger", "strategy"]
    assert all(line.split()[1] == "running" for line in lines[1:5])
    assert len(lines) == 6
    assert lines[5].startswith("trading: enabled; published by ledger pid "), lines[5]
    assert pipeline.admin("ping").returncode == 0


def test_pause_stops_orders_while_ingest_keeps_reading(pipeline: Pipeline) -> None:
    result = pipeline.admin("pause")
    assert result.returncode == 0, result.stderr
    assert pipeline.status()["strategy"]["paused"] is True
    intents = pipeline.status()["strategy"]["intents"]
    ticks = pipeline.status()["ingest"]["ticks"]
    eventually(lambda: pipeline.status()["ingest"]["ticks"] > ticks + 500, timeout_s=20)
    assert pipeline.status()["strategy"]["intents"] == intents
    assert pipeline.admin("resume").returncode == 0
    eventually(lambda: pipeline.status()["strategy"]["intents"] > intents, timeout_s=20)


def _withheld_metric(pipeline: Pipeline, reason: str) -> float:
    port = int((pipeline.data_dir / "run" / "strategy.metrics-port").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = f'pipeline_strategy_intents_withheld_total{{reason="{reason}"}} '
    return sum(float(line.removeprefix(prefix)) for line in text.splitlines()
               if line.startswith(prefix))


def _sign(pipeline: Pipeline, key: Path, *flags: str, env: str = "paper") -> Path:
    out = key.with_name(f"sig-{key.stem}-{time.monotonic_ns()}.json")
    result = pipeline.admin("--env", env, "sign", "--keypair", str(key), *flags, "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _audit_codes(pipeline: Pipeline) -> list[str]:
    rows = query(pipeline.database, "SELECT detail FROM audit_log "
                                    "WHERE action = 'kill_switch.rejected' ORDER BY id")
    return [json.loads(str(detail))["code"] for (detail,) in rows]


def _orders(pipeline: Pipeline) -> int:
    return int(query(pipeline.database, "SELECT count(*) FROM orders")[0][0])


def test_kill_stops_the_executor_within_50_ms_and_multisig_enables(pipeline: Pipeline) -> None:
    kill = pipeline.admin("kill", "--reason", "integration test")
    assert kill.returncode == 0, kill.stderr
    committed_ns = int(kill.stdout.rsplit("committed_ns=", 1)[1].split()[0])
    # The strategy withholds its intents: after the few already in the intents ring (those
    # the executor rejects), nothing more is booked while the strategy keeps deciding.
    withheld = pipeline.status()["strategy"]["withheld"]
    eventually(lambda: pipeline.status()["strategy"]["withheld"] > withheld + 3, timeout_s=30)
    booked = _orders(pipeline)
    withheld = pipeline.status()["strategy"]["withheld"]
    counted = _withheld_metric(pipeline, "trade_disabled")
    eventually(lambda: pipeline.status()["strategy"]["withheld"] > withheld + 20, timeout_s=30)
    assert _orders(pipeline) == booked, "orders were booked while trading was off"
    assert _withheld_metric(pipeline, "trade_disabled") > counted
    last_sent_ns = query(pipeline.database, "SELECT max(send_ns) FROM orders WHERE "
                         "reject_reason IS NOT 'TRADING_DISABLED'")[0][0]
    assert isinstance(last_sent_ns, int)
    stop_ns = last_sent_ns - committed_ns
    print(f"executor's last send {stop_ns / 1e6:.3f} ms after the disable committed")
    assert stop_ns <= STOP_BUDGET_NS
    status = pipeline.status()
    assert status["executor"]["trade_enabled"] is False
    assert status["ledger"]["trading"] == {"enabled": False, "reasons": ["trade_disabled"]}
    line = pipeline.admin("status").stdout.splitlines()[-1]
    assert line.startswith("trading: HALTED (trade_disabled); published by ledger pid"), line
    assert "strategy withheld" in line

    first = _sign(pipeline, pipeline.keys[0], "--enable")
    one = pipeline.admin("trade-enable", str(first))
    assert one.returncode == 1
    assert "too_few_signatures" in one.stdout
    second = _sign(pipeline, pipeline.keys[1], "--like", str(first))
    enabled = pipeline.admin("trade-enable", str(first), str(second))
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    eventually(lambda: pipeline.status()["executor"]["trade_enabled"] is True, timeout_s=10)
    eventually(lambda: _orders(pipeline) > booked, timeout_s=30)  # trading resumes
    replay = pipeline.admin("trade-enable", str(first), str(second))
    assert replay.returncode == 1
    assert "replayed_nonce" in replay.stdout
    assert _audit_codes(pipeline)[-2:] == ["too_few_signatures", "replayed_nonce"]
    row = query(pipeline.database, "SELECT detail FROM audit_log WHERE action = "
                                   "'kill_switch.set' ORDER BY id DESC LIMIT 1")[0][0]
    assert sorted(json.loads(str(row))["signers"]) == sorted(
        _pubkey(k) for k in pipeline.keys[:2])


def test_every_bad_enable_is_refused_with_its_code(pipeline: Pipeline, tmp_path: Path) -> None:
    good = _sign(pipeline, pipeline.keys[0], "--enable")
    other_env = _sign(pipeline, pipeline.keys[1], "--enable", env="localnet")
    expired = _sign(pipeline, pipeline.keys[1], "--enable", "--expires-in", "-5")
    forged = tmp_path / "forged.json"  # keys[0]'s signature presented as keys[1]'s
    forged.write_text(json.dumps({**json.loads(good.read_text()),
                                  "pubkey": _pubkey(pipeline.keys[1])}))
    cases = {
        "wrong_environment": [other_env, _sign(pipeline, pipeline.keys[2], "--like",
                                               str(other_env), env="localnet")],
        "expired": [expired, _sign(pipeline, pipeline.keys[2], "--like", str(expired))],
        "unknown_signer": [good, _sign(pipeline, pipeline.outsider, "--like", str(good))],
        "bad_signature": [good, forged],
    }
    for code, files in cases.items():
        result = pipeline.admin("trade-enable", *map(str, files))
        assert result.returncode == 1, (code, result.stdout, result.stderr)
        assert code in result.stdout, (code, result.stdout)
        assert _audit_codes(pipeline)[-1] == code


def test_keypair_files_readable_by_others_are_refused(pipeline: Pipeline) -> None:
    loose = pipeline.keys[0].with_name("loose.json")
    loose.write_text(pipeline.keys[0].read_text())
    loose.chmod(0o644)
    result = pipeline.admin("sign", "--keypair", str(loose), "--enable")
    assert result.returncode == 2
    assert "chmod 600" in result.stderr
    assert result.stdout == ""


def test_orders_and_fills_read_the_database(pipeline: Pipeline) -> None:
    orders = pipeline.admin("orders", "--limit", "5")
    fills = pipeline.admin("fills", "--limit", "5")
    assert orders.returncode == 0, orders.stderr
    assert fills.returncode == 0, fills.stderr
    assert orders.stdout.splitlines()[0].split()[:3] == ["id", "client_order_id", "symbol"]
    assert 1 < len(fills.stdout.splitlines()) <= 6


def test_reload_applies_risk_limits_and_refuses_a_bad_config(pipeline: Pipeline) -> None:
    strategy = pipeline.status()["strategy"]
    pipeline.config.write_text(CONFIG.replace("max_position = 10.0", "max_position = 5.0"))
    os.kill(strategy["pid"], signal.SIGHUP)
    eventually(lambda: pipeline.status()["strategy"]["config_version"] ==
               strategy["config_version"] + 1, timeout_s=10)
    pipeline.config.write_text(CONFIG.replace("max_position = 10.0", "max_position = -1.0"))
    refused = pipeline.admin("reload", "strategy", with_config=False)
    assert refused.returncode == 1
    assert "invalid_config" in refused.stdout
    assert "max_position" in refused.stdout
    after = json.loads(pipeline.admin("status", "--json", with_config=False).stdout)["strategy"]
    assert after["config_version"] == strategy["config_version"] + 1
    assert after["tick_overruns"] == 0  # nothing dropped while reloading
    log = (pipeline.data_dir / "logs" / "strategy.log").read_text()
    assert "config.reload_refused" in log
    pipeline.config.write_text(CONFIG)
    assert pipeline.admin("reload").returncode == 0


def test_watch_streams_events_and_reports_a_hung_process(pipeline: Pipeline) -> None:
    ingest_pid = pipeline.status()["ingest"]["pid"]
    watch = subprocess.Popen(pipeline_cmd("admin", "--data-dir", str(pipeline.data_dir),
                                          "watch", "--duration", "4"),
                             env=pipeline.env, text=True, stdout=subprocess.PIPE)
    try:
        os.kill(ingest_pid, signal.SIGSTOP)
        started = time.monotonic()
        down = pipeline.admin("ping", "ingest")
        elapsed_s = time.monotonic() - started
        assert down.returncode == 3
        assert "not answering" in down.stdout
        assert elapsed_s < 15, "the admin client must give up after a bounded wait"
        output = watch.communicate(timeout=30)[0]
    finally:
        os.kill(ingest_pid, signal.SIGCONT)
    assert "heartbeat.ledger" in output
    assert "ingest has not heartbeated" in output
    assert watch.returncode == 3


def test_a_pipeline_that_is_not_running_gives_a_clear_message(tmp_path: Path,
                                                               shm_dir: Path) -> None:
    result = subprocess.run(pipeline_cmd("admin", "--data-dir", str(tmp_path), "status"),
                            env=pipeline_env(shm_dir), capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 3
    assert "ledger is not running" in result.stdout
