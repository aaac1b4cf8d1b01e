"""Bootstrap probes only the URLs in use, and only in the process that calls them.

Real HTTP servers on 127.0.0.1 stand in for the providers; a URL nobody serves is a port
that was bound and released (a connect is refused at once). Nothing leaves the host.
"""

from __future__ import annotations

import logging
import socket
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from testkit import serve_http

from pipeline import bootstrap
from pipeline.cli import main
from pipeline.config import PROCESSES, PipelineConfig, load_config


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is not the place for access logs."""


def http_server() -> AbstractContextManager[str]:
    """A real HTTP server on 127.0.0.1 answering 200 ``{}``; yields its base URL."""
    return serve_http(_Ok)


def dead_url() -> str:
    """A URL on a port nobody listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _config(tmp_path: Path, shm_dir: Path, **sections: object) -> PipelineConfig:
    overrides: dict[str, object] = {"data_dir": str(tmp_path / "var"),
                                    "rings": {"shm_dir": str(shm_dir)}, **sections}
    return load_config(environ={}, overrides=overrides)


def _coingecko(coingecko_url: str, **live: object) -> dict[str, object]:
    """A Coingecko feed whose other providers' URLs all point at nothing."""
    unused = dead_url()
    return {"feed": "coingecko",
            "live": {"coingecko_url": coingecko_url, "coingecko_pro_url": unused,
                     "hermes_url": unused, "jupiter_url": unused, "rpc_urls": [unused],
                     **live}}


def _failed_at_start(process: str, config: PipelineConfig) -> dict[str, float]:
    """check -> pipeline_bootstrap_check_failed, as ``process`` exports it after its start."""
    registry = CollectorRegistry()
    bootstrap.refuse_at_start(process, config, registry, logging.getLogger("test"))
    return {sample.labels["check"]: sample.value
            for metric in registry.collect() if metric.name == "pipeline_bootstrap_check_failed"
            for sample in metric.samples if sample.name == metric.name}


def test_a_coingecko_feed_probes_its_url_only_and_only_in_ingest(tmp_path: Path,
                                                                  shm_dir: Path) -> None:
    with http_server() as url:
        config = _config(tmp_path, shm_dir, ingest=_coingecko(f"{url}/api/v3"))
        result = bootstrap.check_feed_endpoints(config)
        assert result.status == bootstrap.PASS, result.detail
        assert result.detail.startswith("ingest.live.coingecko_url ")
        assert "hermes" not in result.detail
        assert "rpc_urls" not in result.detail
        started = {process: _failed_at_start(process, config) for process in PROCESSES}
    assert started["ingest"]["feed_endpoints"] == 0.0
    # The provider is gone: one failed check, in ingest alone.
    down = {process: _failed_at_start(process, config) for process in PROCESSES}
    assert {process: sorted(check for check, failed in checks.items() if failed)
            for process, checks in down.items()} == {
        "ingest": ["feed_endpoints"], "strategy": [], "executor": [], "ledger": []}
    for process in ("strategy", "executor", "ledger"):
        assert "feed_endpoints" not in started[process]
        assert "feed_endpoints" not in down[process]
    assert "ingest.live.coingecko_url" in bootstrap.check_feed_endpoints(config).detail


def test_the_pro_key_and_a_cross_check_decide_which_urls_are_called(tmp_path: Path,
                                                                     shm_dir: Path) -> None:
    with http_server() as pro, http_server() as hermes:
        live = {"coingecko_key_kind": "pro", "coingecko_pro_url": pro,
                "cross_check": "hermes", "hermes_url": hermes}
        config = _config(tmp_path, shm_dir, ingest=_coingecko(dead_url(), **live))
        assert [key for key, _ in bootstrap.feed_urls(config)] == [
            "ingest.live.coingecko_pro_url", "ingest.live.hermes_url"]
        assert bootstrap.check_feed_endpoints(config).status == bootstrap.PASS


def test_pyth_calls_its_rpc_and_websocket_urls(tmp_path: Path, shm_dir: Path) -> None:
    live = {"rpc_urls": ["http://127.0.0.1:1", "http://127.0.0.1:2"],
            "ws_urls": ["ws://127.0.0.1:3"], "cross_check": "jupiter",
            "jupiter_url": "http://127.0.0.1:4", "hermes_url": "http://127.0.0.1:5"}
    config = _config(tmp_path, shm_dir, ingest={"feed": "pyth", "live": live})
    assert [key for key, _ in bootstrap.feed_urls(config)] == [
        "ingest.live.rpc_urls.0", "ingest.live.rpc_urls.1", "ingest.live.ws_urls.0",
        "ingest.live.jupiter_url"]


@pytest.mark.parametrize("feed", ["replay", "synthetic"])
def test_offline_feeds_probe_nothing(tmp_path: Path, shm_dir: Path, feed: str) -> None:
    config = _config(tmp_path, shm_dir, ingest={"feed": feed,
                                                "live": {"jupiter_url": dead_url()}})
    assert bootstrap.check_feed_endpoints(config).status == bootstrap.SKIP
    assert bootstrap.check_venue_endpoints(config).status == bootstrap.SKIP


def test_the_venue_urls_are_the_executors_to_probe(tmp_path: Path, shm_dir: Path) -> None:
    with http_server() as rpc:
        swap = dead_url()
        config = _config(tmp_path, shm_dir, env="devnet", executor={
            "venue": "solana", "solana": {"rpc_url": rpc, "swap_url": swap}})
        result = bootstrap.check_venue_endpoints(config)
    assert result.failed
    assert "executor.solana.swap_url" in result.detail
    assert "rpc_url" not in result.detail  # it answered
    assert bootstrap.OWNERS["venue_endpoints"] == "executor"
    assert {"venue_endpoints", "solana"} <= bootstrap.owned_by_others("ingest")
    assert not {"venue_endpoints", "solana"} & bootstrap.owned_by_others("executor")


def test_backup_endpoint_is_probed_only_when_backups_are_on(tmp_path: Path,
                                                            shm_dir: Path) -> None:
    off = _config(tmp_path, shm_dir, ledger={"backup": {"endpoint_url": dead_url()}})
    assert bootstrap.check_backup_endpoint(off).status == bootstrap.SKIP
    assert bootstrap.owned_by_others("ledger").isdisjoint({"backup_endpoint"})


def test_pipeline_check_for_one_process_shows_its_checks_only(
        tmp_path: Path, shm_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE__RINGS__SHM_DIR", f'"{shm_dir}"')
    monkeypatch.setenv("PIPELINE__INGEST__FEED", '"coingecko"')
    monkeypatch.setenv("PIPELINE__INGEST__LIVE__COINGECKO_URL", f'"{dead_url()}"')
    data_dir = str(tmp_path / "var")
    assert main(["check", "--data-dir", data_dir, "--process", "strategy"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]}
    assert "feed_endpoints" not in names
    assert "rings" in names
    assert main(["check", "--data-dir", data_dir, "--process", "ingest"]) == 2
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert ["feed_endpoints", "fail"] in rows
    assert main(["check", "--data-dir", data_dir]) == 2  # every check: the feed's too
