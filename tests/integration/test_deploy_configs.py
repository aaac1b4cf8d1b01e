"""The deploy/ configurations, checked by the real Prometheus and Alertmanager tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SEVERITIES = {"critical", "warning", "info", "none"}
REQUIRED_ALERTS = (
    "Watchdog", "MonitoringTargetDown", "AlertmanagerNotificationsFailing",
    "TickToOrderP999OverBudget", "BootstrapFailed", "ProcessDown", "ProcessNotHeartbeating",
    "FeedStale", "FeedsAllStale", "FeedErrorRate", "RingOverruns", "LedgerCommitsStalled",
    "TradingHaltedLedgerStalled", "TradingHaltedClockUnsafe", "StrategyPausedTooLong",
    "RejectRatioSpike", "NoFillsWhileTradingEnabled", "TradingDisabled", "BackupTooOld",
    "BackupsDisabled", "DiskFreeLow", "LedgerWalLarge", "ClockDrift", "ClockCheckDisabled",
    "ChainBalanceMismatch", "ChainWatchNotRunning", "OrderOutcomeUnknown",
    "ConsolidatorLagging",
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (./dev.sh test installs Debian's packages)")
    return path


def _run(*cmd: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus/rules/pipeline.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_prometheus_config_is_valid() -> None:
    result = _run(_tool("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid_and_cover_every_required_alert() -> None:
    result = _run(_tool("promtool"), "check", "rules", "prometheus/rules/pipeline.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = _alert_rules()
    assert set(REQUIRED_ALERTS) <= {rule["alert"] for rule in alerts}
    for rule in alerts:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook"], rule["alert"]


def test_alert_rule_unit_tests_pass() -> None:
    result = _run(_tool("promtool"), "test", "rules", "prometheus/tests/pipeline_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case_with_an_environment() -> None:
    """The promtool tests show each alert firing and silent, and every expected alert carries
    the environment label that Alertmanager routes on."""
    tests = yaml.safe_load((DEPLOY / "prometheus/tests/pipeline_test.yml").read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
            for alert in check["exp_alerts"]:
                assert "environment" in alert["exp_labels"], (case["name"], check["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names == firing, names ^ firing
    assert names == silent, names ^ silent


def _routes(amtool: str, config: str, *labels: str) -> str:
    routed = _run(amtool, "config", "routes", "test", "--config.file", config, *labels)
    assert routed.returncode == 0, routed.stderr
    return routed.stdout.strip()


def test_alertmanager_config_is_valid_and_pages_only_on_mainnet_critical() -> None:
    amtool = _tool("amtool")
    config = "alertmanager/alertmanager.yml"
    result = _run(amtool, "check-config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    routed = {
        "mainnet critical": _routes(amtool, config, "alertname=ProcessDown",
                                    "environment=mainnet", "severity=critical"),
        "devnet critical": _routes(amtool, config, "alertname=ProcessDown",
                                   "environment=devnet", "severity=critical"),
        "paper critical": _routes(amtool, config, "alertname=ProcessDown",
                                  "environment=paper", "severity=critical"),
        "mainnet warning": _routes(amtool, config, "alertname=FeedStale",
                                   "environment=mainnet", "severity=warning"),
        "mainnet info": _routes(amtool, config, "alertname=TradingDisabled",
                                "environment=mainnet", "severity=info"),
        "no environment": _routes(amtool, config, "alertname=ProcessDown", "severity=critical"),
        "watchdog": _routes(amtool, config, "alertname=Watchdog", "environment=mainnet",
                            "severity=none"),
    }
    assert routed == {
        "mainnet critical": "pagerduty,team-chat",
        "devnet critical": "team-chat",
        "paper critical": "team-chat",
        "mainnet warning": "team-chat",
        "mainnet info": "team-info",
        "no environment": "team-chat",
        "watchdog": "deadmansswitch",
    }


def test_alertmanager_rejects_a_misspelt_pagerduty_key(tmp_path: Path) -> None:
    """The check is strict, so a passing check means the routing key file is really used."""
    text = (DEPLOY / "alertmanager/alertmanager.yml").read_text()
    bad = tmp_path / "alertmanager.yml"
    bad.write_text(text.replace("routing_key_file", "routing_key_fil"))
    assert _run(_tool("amtool"), "check-config", str(bad)).returncode != 0
