"""The RPC and swap API probe, against the real localnet, the localnet with older-node
simulation faults, and a tiny JSON-RPC proxy in front of it that refuses getTransaction as
history-restricted providers do; and its rows in ``pipeline check``."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from localnet_kit import Localnet, running_localnet
from testkit import serve_http

from pipeline import bootstrap
from pipeline.cli import main
from pipeline.config import PipelineConfig, load_config
from pipeline.executor.solana.probe import (
    SIM_ACCOUNTS,
    SIM_BALANCES,
    Capability,
    SwapProbe,
    missing,
    probe,
)
from pipeline.localnet.manifest import Manifest

EVERY = {"getTransaction", "getSignatureStatuses.history", "getBlockHeight",
         "getEpochInfo", "isBlockhashValid", SIM_BALANCES, SIM_ACCOUNTS, "getMultipleAccounts",
         "getBalance", "getAccountInfo", "swap_api"}


def _probe(net: Localnet, rpc_url: str = "") -> dict[str, Capability]:
    sol, usdt = net.world.assets["SOL"], net.world.assets["USDT"]
    swap = SwapProbe("v2", input_mint=str(usdt.mint), output_mint=str(sol.mint),
                     amount=10**usdt.decimals)
    found = probe(rpc_url or net.url, net.url, str(net.world.trader.pubkey()), swap,
                  timeout_s=5.0)
    return {c.name: c for c in found}


@contextmanager
def refusing_get_transaction(upstream: str) -> Iterator[str]:
    """A JSON-RPC server on 127.0.0.1 that answers -32601 for getTransaction and forwards
    every other call to ``upstream``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = json.loads(raw)
            if request.get("method") == "getTransaction":
                body = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "error": {
                    "code": -32601, "message": "Method not found"}}).encode()
            else:
                forwarded = urllib.request.Request(upstream, raw,
                                                   {"Content-Type": "application/json"})
                with urllib.request.urlopen(forwarded, timeout=5) as answer:
                    body = answer.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serve_http(Handler) as url:
        yield url


def test_the_localnet_serves_every_capability(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        found = _probe(net)
    assert set(found) == EVERY
    assert [c.name for c in found.values() if not c.available] == []
    assert missing(list(found.values())) == []
    assert found["swap_api"].detail.startswith("GET /swap/v2/order: quoted 1000000 -> ")
    assert not found["getMultipleAccounts"].required  # the balance fields make it optional


def test_an_older_node_shows_the_accounts_fallback(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        net.admin({"faults": [{"kind": "sim_no_balances", "count": 1000}]})
        found = _probe(net)
    balances = found[SIM_BALANCES]
    assert not balances.available
    assert balances.fallback == SIM_ACCOUNTS
    assert "preBalances" in balances.detail
    assert found[SIM_ACCOUNTS].available
    assert found["getMultipleAccounts"].required
    assert found["getMultipleAccounts"].available
    assert missing(list(found.values())) == []


def test_without_balances_or_accounts_the_simulation_is_missing(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        net.admin({"faults": [{"kind": "sim_no_accounts", "count": 1000}]})
        found = _probe(net)
    assert [c.name for c in missing(list(found.values()))] == [SIM_BALANCES, SIM_ACCOUNTS]
    assert "accounts option is ignored" in found[SIM_ACCOUNTS].detail


def test_a_provider_refusing_get_transaction_is_missing_it(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net, refusing_get_transaction(net.url) as proxy:
        found = _probe(net, rpc_url=proxy)
    assert [c.name for c in missing(list(found.values()))] == ["getTransaction"]
    assert "-32601" in found["getTransaction"].detail


def test_an_unreachable_swap_api_is_missing(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        found = probe(net.url, "http://127.0.0.1:9", str(net.world.trader.pubkey()),
                      SwapProbe("v1"), timeout_s=2.0)
    assert [c.name for c in missing(found)] == ["swap_api"]


def _localnet_config(tmp_path: Path, shm_dir: Path, net: Localnet,
                     rpc_url: str = "") -> PipelineConfig:
    config = load_config(environ={}, overrides={
        "env": "localnet", "data_dir": str(tmp_path / "var"),
        "rings": {"shm_dir": str(shm_dir)},
        "executor": {"solana": {"rpc_url": rpc_url, "rpc_timeout_s": 3.0}}})
    Manifest(url=net.url, trader_keypair=str(net.world.trader_key_path),
             trader=str(net.world.trader.pubkey()), maker=str(net.world.maker.pubkey()),
             mints={a.name: (str(a.mint), a.decimals) for a in net.world.assets.values()},
             pid=os.getpid()).write(config.paths.run_dir)
    return config


def test_the_bootstrap_checks_show_one_row_per_capability(tmp_path: Path,
                                                          shm_dir: Path) -> None:
    with running_localnet(tmp_path / "net") as net:
        net.admin({"faults": [{"kind": "sim_no_balances", "count": 1000}]})
        rows = {r.name: r for r in bootstrap.run_checks(_localnet_config(tmp_path, shm_dir,
                                                                         net))}
    assert {f"solana.{name}" for name in EVERY} <= set(rows)
    assert rows["solana.getTransaction"].status == bootstrap.PASS
    assert rows[f"solana.{SIM_BALANCES}"].status == bootstrap.WARN
    assert SIM_ACCOUNTS in rows[f"solana.{SIM_BALANCES}"].detail
    assert not any(r.failed for r in rows.values() if r.name.startswith("solana."))


def test_pipeline_check_fails_naming_the_missing_method(
        tmp_path: Path, shm_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with running_localnet(tmp_path / "net") as net, refusing_get_transaction(net.url) as proxy:
        config = _localnet_config(tmp_path, shm_dir, net, rpc_url=proxy)
        monkeypatch.setenv("PIPELINE__RINGS__SHM_DIR", f'"{shm_dir}"')
        monkeypatch.setenv("PIPELINE__EXECUTOR__SOLANA__RPC_URL", f'"{proxy}"')
        assert main(["check", "--env", "localnet", "--data-dir",
                     str(config.paths.data_dir)]) == 2
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if " fail " in line]
    assert len(failed) == 1, out
    assert failed[0].startswith("solana.getTransaction")
    assert "missing, required: method not found (-32601)" in failed[0]
