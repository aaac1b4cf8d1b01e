"""The deploy/ configurations, checked by the real Prometheus and Alertmanager tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (./dev.sh test installs Debian's packages)")
    return path


def _run(*cmd: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_prometheus_config_is_valid() -> None:
    result = _run(_tool("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid_and_cover_every_required_alert() -> None:
    result = _run(_tool("promtool"), "check", "rules", "prometheus/rules/pipeline.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "prometheus/rules/pipeline.yml").read_text()
    for alert in ("TickToOrderP999OverBudget", "BootstrapFailed", "ProcessDown",
                  "ProcessNotHeartbeating", "FeedStale", "RingOverruns", "LedgerCommitsStalled",
                  "BackupTooOld", "ClockDrift", "ChainBalanceMismatch", "TradingDisabled"):
        assert f"alert: {alert}\n" in text, alert


def test_alert_rule_unit_tests_pass() -> None:
    result = _run(_tool("promtool"), "test", "rules", "prometheus/tests/pipeline_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_config_is_valid_and_pages_only_on_page_severity() -> None:
    amtool = _tool("amtool")
    config = "alertmanager/alertmanager.yml"
    result = _run(amtool, "check-config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    routes = {}
    for severity in ("page", "info"):
        routed = _run(amtool, "config", "routes", "test", "--config.file", config,
                      f"severity={severity}", "alertname=Example")
        assert routed.returncode == 0, routed.stderr
        routes[severity] = routed.stdout.strip()
    assert routes == {"page": "pagerduty", "info": "team-info"}


def test_alertmanager_rejects_a_misspelt_pagerduty_key(tmp_path: Path) -> None:
    """The check is strict, so a passing check means the routing key file is really used."""
    text = (DEPLOY / "alertmanager/alertmanager.yml").read_text()
    bad = tmp_path / "alertmanager.yml"
    bad.write_text(text.replace("routing_key_file", "routing_key_fil"))
    assert _run(_tool("amtool"), "check-config", str(bad)).returncode != 0
