"""The offline Solana venue end to end: real processes, real signatures, chain == ledger.

`pipeline run --env localnet` trades against `pipeline localnet` (LiteSVM behind JSON-RPC
and a Jupiter-shaped maker); afterwards the trader's token accounts on chain (saved by the
localnet on its orderly stop) must equal the ledger's balances. A SIGKILL of the executor
between send and confirmation must leave neither a duplicate nor a lost fill.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import (
    count,
    kill_leftovers,
    log_events,
    pipeline_cmd,
    pipeline_env,
    query,
    start_process,
    stop_in_order,
)
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from testkit import eventually

from pipeline.localnet.maker import transfer_checked
from pipeline.solana.account import NATIVE_SOL
from pipeline.solana.keys import load_keypair
from pipeline.solana.tokens import associated_token_address, unpack_account

LOCALNET = {
    "PIPELINE__LOCALNET__PORT": "0",
    "PIPELINE__CLOCK__SERVERS": '["127.0.0.1:9"]',  # no NTP on the internet from tests
    "PIPELINE__RISK__MAX_ORDERS_PER_S": "4",
}


def _env(shm_dir: Path, **extra: str) -> dict[str, str]:
    return pipeline_env(shm_dir, **LOCALNET, **extra)


def chain_balances(data_dir: Path) -> dict[str, float]:
    """The trader's balances as the localnet saved them at its orderly stop: its token
    accounts, and its lamports (fees) as "native SOL"."""
    state = json.loads((data_dir / "localnet-state.json").read_text())
    trader = load_keypair(data_dir / "keys" / "localnet-trader.json").pubkey()
    out = {NATIVE_SOL: state["accounts"][str(trader)]["lamports"] / 1e9}
    for name, asset in state["assets"].items():
        key = associated_token_address(trader, Pubkey.from_string(asset["mint"]))
        account = state["accounts"][str(key)]
        amount = unpack_account(base64.b64decode(account["data"]))[2]
        out[name] = amount / 10 ** asset["decimals"]
    return out


def ledger_balances(database: Path) -> dict[str, float]:
    rows = query(database, "SELECT asset, amount FROM balances WHERE id IN "
                           "(SELECT max(id) FROM balances GROUP BY asset)")
    return {str(asset): float(str(amount)) for asset, amount in rows}


def assert_chain_equals_ledger(data_dir: Path, database: Path) -> None:
    chain, ledger = chain_balances(data_dir), ledger_balances(database)
    for asset, amount in chain.items():
        assert abs(amount - ledger.get(asset, 0.0)) < 1e-6, (asset, chain, ledger)


def assert_real_distinct_signatures(database: Path) -> int:
    refs = [str(r[0]) for r in query(database, "SELECT venue_ref FROM orders "
                                               "WHERE status = 'filled'")]
    assert refs, "no fills"
    assert len(set(refs)) == len(refs), "one transaction per fill"
    for ref in refs:
        Signature.from_string(ref)  # a real 64-byte ed25519 signature, base58
    return len(refs)


def test_pipeline_run_env_localnet_trades_with_real_signatures(tmp_path: Path,
                                                              shm_dir: Path) -> None:
    data_dir = tmp_path / "var"
    database = data_dir / "ledger-localnet.sqlite"
    run = subprocess.Popen(pipeline_cmd("run", "--env", "localnet", "--data-dir",
                                        str(data_dir)), env=_env(shm_dir),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        # Three fills, and a chain reading the ledger took after fills while trading (it
        # waits for a moment with no order open; a stop first would make it "shutdown").
        eventually(lambda: count(database, "SELECT count(*) FROM fills") >= 3
                   and count(database, "SELECT count(*) FROM chain_balances "
                                       "WHERE reason = 'fills'") > 0,
                   timeout_s=90, interval_s=0.2,
                   message="three fills on the localnet and a reading after fills")
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode in (0, 1), output
    fills = assert_real_distinct_signatures(database)
    assert count(database, "SELECT count(*) FROM fills") == fills
    assert_chain_equals_ledger(data_dir, database)
    assert_ledger_watched_the_chain(database)
    assert "run summary" in output
    assert_no_key_in_logs(data_dir, output)


def assert_ledger_watched_the_chain(database: Path) -> None:
    """The ledger read the chain at start-up and after fills, every reading agreed with its
    own balances, network fees were booked and trading stayed on."""
    reasons = {str(r[0]) for r in query(database, "SELECT DISTINCT reason FROM chain_balances")}
    assert {"startup", "fills"} <= reasons, reasons
    assert_chain_always_agreed(database)
    assert count(database, "SELECT count(*) FROM orders WHERE status = 'filled' "
                           "AND network_fee > 0") == count(database, "SELECT count(*) FROM fills")
    assert count(database, "SELECT count(*) FROM order_signatures") >= count(
        database, "SELECT count(*) FROM fills")


def assert_chain_always_agreed(database: Path) -> None:
    """Every chain reading the ledger took matched its books, so trading stayed on."""
    worst = query(database, "SELECT max(abs(amount - ledger_amount)) FROM chain_balances")
    assert float(str(worst[0][0])) < 1e-6
    assert query(database, "SELECT value FROM config WHERE key = 'TRADE_ENABLED'") == [
        ("true",)]


def assert_no_key_in_logs(data_dir: Path, output: str) -> None:
    """The keypairs the run used appear in no log line and not in its output."""
    texts = [output, *(p.read_text(errors="replace") for p in (data_dir / "logs").glob("*.log*"))]
    for name in ("localnet-trader.json", "localnet-maker.json"):
        path = data_dir / "keys" / name
        keypair = load_keypair(path)
        secrets = {str(keypair), path.read_text().strip(),
                   ",".join(str(b) for b in bytes(keypair)[:32])}
        for secret in secrets:
            assert not any(secret in text for text in texts), f"{name} leaked into the logs"


def _admin(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url + "/admin", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


@pytest.mark.parametrize("trading_off_meanwhile", [False, True],
                         ids=["trading-on", "kill-switch-while-down"])
def test_sigkill_of_the_executor_between_send_and_confirmation(
        tmp_path: Path, shm_dir: Path, trading_off_meanwhile: bool) -> None:
    """With ``trading_off_meanwhile`` the operator also turns trading off while the executor
    is down: the restarted executor still settles what was signed before (a fill must not
    be lost to the kill switch) and sends nothing new."""
    data_dir = tmp_path / "var"
    database = data_dir / "ledger-localnet.sqlite"
    env = _env(shm_dir, PIPELINE_CHILD="1")
    common = ["--env", "localnet", "--data-dir", str(data_dir)]
    localnet = start_process("localnet", *common, env=env, quiet=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        manifest = data_dir / "run" / "localnet.json"
        eventually(manifest.exists, timeout_s=30, interval_s=0.05, message="localnet up")
        url = json.loads(manifest.read_text())["url"]
        for name in ("ledger", "executor", "strategy", "ingest"):
            procs[name] = start_process(name, *common, env=env, quiet=True)
        eventually(lambda: count(database, "SELECT count(*) FROM fills") >= 1,
                   timeout_s=90, interval_s=0.2, message="a first fill")
        _admin(url, {"paused": True})
        in_flight: list[str] = []

        def sent_and_booked_new() -> bool:
            queued = set(_admin(url, {})["queued"])
            new = {str(r[0]) for r in query(database, "SELECT venue_ref FROM orders WHERE "
                                                      "status = 'new' AND venue_ref != ''")}
            in_flight[:] = sorted(queued & new)
            return bool(in_flight)

        eventually(sent_and_booked_new, timeout_s=60, interval_s=0.05,
                   message="a NEW order whose transaction waits for a block")
        procs["executor"].kill()  # SIGKILL: no drain, no final report
        procs["executor"].wait()
        if trading_off_meanwhile:
            kill = subprocess.run(pipeline_cmd("admin", *common, "kill", "--reason",
                                               "drill"), env=env, capture_output=True,
                                  text=True, timeout=60, check=False)
            assert kill.returncode == 0, kill.stdout + kill.stderr
        signed_before = {str(r[0]) for r in query(
            database, "SELECT venue_ref FROM orders WHERE venue_ref != ''")}
        _admin(url, {"paused": False})
        procs["executor"] = start_process("executor", *common, env=env, quiet=True)
        victim = in_flight[0]
        eventually(lambda: count(database, "SELECT count(*) FROM orders WHERE status = "
                                            f"'filled' AND venue_ref = '{victim}'") == 1,
                   timeout_s=60, interval_s=0.2, message="the in-flight order filled")
        stop_in_order(procs)
        localnet.send_signal(signal.SIGTERM)
        assert localnet.wait(timeout=30) == 0
    finally:
        kill_leftovers([*procs.values(), localnet])
    assert_real_distinct_signatures(database)
    assert_chain_equals_ledger(data_dir, database)
    if not trading_off_meanwhile:
        assert_chain_always_agreed(database)
        return
    filled = {str(r[0]) for r in query(database, "SELECT venue_ref FROM orders WHERE "
                                                 "status = 'filled'")}
    assert filled <= signed_before, "nothing new was signed and filled with trading off"
    assert count(database, "SELECT count(*) FROM orders WHERE status = 'new'") == 0
    assert query(database, "SELECT value FROM config WHERE key = 'TRADE_ENABLED'") == [
        ("false",)]


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, answer
    return answer["result"]


def _send_usdt_away(url: str, data_dir: Path, manifest: dict[str, Any], amount: int) -> None:
    """A transfer out of the trader's wallet that no order made (a leaked key, a mistake)."""
    trader = load_keypair(data_dir / "keys" / "localnet-trader.json")
    mint = Pubkey.from_string(manifest["mints"]["USDT"][0])
    maker = Pubkey.from_string(manifest["maker"])
    instruction = transfer_checked(associated_token_address(trader.pubkey(), mint), mint,
                                   associated_token_address(maker, mint), trader.pubkey(),
                                   amount=amount, decimals=6)
    blockhash = Hash.from_string(_rpc(url, "getLatestBlockhash", [])["value"]["blockhash"])
    message = MessageV0.try_compile(trader.pubkey(), [instruction], [], blockhash)
    tx = VersionedTransaction(message, [trader])
    _rpc(url, "sendTransaction", [base64.b64encode(bytes(tx)).decode(),
                                  {"encoding": "base64"}])


def test_money_leaving_the_wallet_outside_the_pipeline_turns_trading_off(
        tmp_path: Path, shm_dir: Path) -> None:
    data_dir = tmp_path / "var"
    database = data_dir / "ledger-localnet.sqlite"
    env = _env(shm_dir, PIPELINE_CHILD="1", PIPELINE__EXECUTOR__SOLANA__BALANCE_RECHECK_S="0.2")
    common = ["--env", "localnet", "--data-dir", str(data_dir)]
    localnet = start_process("localnet", *common, env=env, quiet=True)
    ledger = None
    try:
        manifest_path = data_dir / "run" / "localnet.json"
        eventually(manifest_path.exists, timeout_s=30, interval_s=0.05, message="localnet up")
        manifest = json.loads(manifest_path.read_text())
        ledger = start_process("ledger", *common, env=env, quiet=True)
        eventually(lambda: count(database, "SELECT count(*) FROM chain_balances") >= 3,
                   timeout_s=30, interval_s=0.05, message="the start-up reading")
        assert query(database, "SELECT value FROM config WHERE key = 'TRADE_ENABLED'") == [
            ("true",)]
        _send_usdt_away(manifest["url"], data_dir, manifest, 5 * 10**6)
        eventually(lambda: query(database, "SELECT value FROM config WHERE key = "
                                           "'TRADE_ENABLED'") == [("false",)],
                   timeout_s=30, interval_s=0.05, message="trading turned off")
        started = log_events(data_dir / "logs" / "ledger.log", "process.started")
        port = started[-1]["metrics_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            metrics = page.read().decode()
        assert "pipeline_chain_balance_mismatch 1.0" in metrics
        assert 'pipeline_chain_balance{asset="USDT"} 99995.0' in metrics
        # The operator explains it (a withdrawal) and re-opens the books at the chain's.
        reopened = subprocess.run(pipeline_cmd("admin", "--env", "localnet", "--data-dir",
                                               str(data_dir), "balances-reopen", "--reason",
                                               "withdrew 5 USDT to cold storage"),
                                  env=env, capture_output=True, text=True, timeout=60,
                                  check=False)
        assert reopened.returncode == 0, reopened.stdout + reopened.stderr
        assert "trading stays disabled" in reopened.stdout
        eventually(lambda: count(database, "SELECT count(*) FROM chain_balances WHERE "
                                           "reason = 'reopen'") == 3,
                   timeout_s=30, interval_s=0.05, message="the re-opening reading")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            assert "pipeline_chain_balance_mismatch 0.0" in page.read().decode()
        ledger.send_signal(signal.SIGTERM)
        ledger.wait(timeout=30)
    finally:
        for proc in (ledger, localnet):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    (actor, detail), = query(database, "SELECT actor, detail FROM audit_log WHERE "
                                       "action = 'config.set'")
    assert actor == "ledger.chain_check"
    differences = json.loads(str(detail))["differences"]
    assert differences["USDT"] == {"chain": 99_995.0, "ledger": 100_000.0}
    fee = differences["native SOL"]["ledger"] - differences["native SOL"]["chain"]
    assert abs(fee - 5_000 / 1e9) < 1e-12, "the transfer's fee, paid by the wallet"
    assert log_events(data_dir / "logs" / "ledger.log", "chain.balance_mismatch")
    usdt = query(database, "SELECT amount, ledger_amount, reason FROM chain_balances WHERE "
                           "asset = 'USDT' ORDER BY id")
    assert (99_995.0, 100_000.0, "periodic") in usdt, "the reading that found the difference"
    assert (99_995.0, 99_995.0, "reopen") in usdt
    assert query(database, "SELECT amount, reason FROM balances WHERE asset = 'USDT' "
                           "ORDER BY id DESC LIMIT 1") == [(99_995.0, "re-opened (chain)")]
    (reopen_detail,), = query(database, "SELECT detail FROM audit_log WHERE "
                                        "action = 'balances.reopened'")
    assert json.loads(str(reopen_detail))["reason"] == "withdrew 5 USDT to cold storage"
    assert query(database, "SELECT value FROM config WHERE key = 'TRADE_ENABLED'") == [
        ("false",)], "re-enabling is the multisig's call"
