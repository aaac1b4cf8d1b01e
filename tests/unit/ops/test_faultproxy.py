"""The fault proxy itself, against a real in-process localnet: each fault does what the
execution-fault suite says it does, so a scenario's failure is the executor's, not the proxy's.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from faultproxy import ChainView, Fault, FaultProxy
from faultscenarios import (
    LostAnswer,
    MethodError,
    NullTransaction,
    RateLimited,
    ShortLastValid,
    SimulationWithoutBalances,
    StaleBlockhash,
    StatusLag,
)
from localnet_kit import Localnet, running_localnet
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from testkit import eventually

from pipeline.executor.solana.orders import sign
from pipeline.localnet.maker import transfer_checked
from pipeline.solana.tokens import associated_token_address


@contextmanager
def proxied(tmp_path: Path, faults: Callable[[ChainView], list[Fault]]
            ) -> Iterator[tuple[Localnet, FaultProxy]]:
    with running_localnet(tmp_path / "net") as net:
        manifest = tmp_path / "localnet.json"
        manifest.write_text(json.dumps({"url": net.url}))
        proxy = FaultProxy(manifest, faults)
        proxy.start()
        try:
            yield net, proxy
        finally:
            proxy.stop()


def _post(url: str, body: Any, timeout_s: float = 10) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def _rpc(url: str, method: str, *params: Any) -> Any:
    return _post(url, {"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)})[1]


def _transfer(net: Localnet, url: str) -> VersionedTransaction:
    """A small USDT transfer from the trader to the maker, signed, with a current blockhash."""
    trader, usdt = net.world.trader, net.world.assets["USDT"]
    instruction = transfer_checked(associated_token_address(trader.pubkey(), usdt.mint),
                                   usdt.mint, net.world.token_account(net.world.maker.pubkey(),
                                                                      "USDT"),
                                   trader.pubkey(), amount=1000, decimals=usdt.decimals)
    blockhash = _rpc(url, "getLatestBlockhash")["result"]["value"]["blockhash"]
    message = MessageV0.try_compile(trader.pubkey(), [instruction], [],
                                    Hash.from_string(blockhash))
    return VersionedTransaction(message, [trader])


def _b64(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


def test_forwards_records_signatures_and_serves_batches(tmp_path: Path) -> None:
    with proxied(tmp_path, lambda _v: [MethodError("getTransaction")]) as (net, proxy):
        tx = _transfer(net, proxy.url)
        answer = _rpc(proxy.url, "sendTransaction", _b64(tx), {"encoding": "base64"})
        assert answer["result"] == str(tx.signatures[0])
        assert proxy.signatures == [str(tx.signatures[0])]
        eventually(lambda: net.chain.status(tx.signatures[0]) is not None, timeout_s=5)
        status, batch, _ = _post(proxy.url, [
            {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
            {"jsonrpc": "2.0", "id": 2, "method": "getTransaction",
             "params": [str(tx.signatures[0]), {"encoding": "base64"}]}])
        assert status == 200
        assert batch[0]["id"] == 1
        assert batch[0]["result"] > 0
        assert batch[1] == {"jsonrpc": "2.0", "id": 2,
                            "error": {"code": -32601, "message": "Method not found"}}
        assert proxy.faults_served() == 1


def test_rate_limit_answers_429_with_retry_after_on_every_third_call(tmp_path: Path) -> None:
    with proxied(tmp_path, lambda _v: [RateLimited(3)]) as (_net, proxy):
        answers = [_post(proxy.url, {"jsonrpc": "2.0", "id": i, "method": "getSlot"})
                   for i in range(6)]
        assert [a[0] for a in answers] == [200, 200, 429, 200, 200, 429]
        assert answers[2][2]["Retry-After"] == "1"


def test_a_reset_send_still_lands(tmp_path: Path) -> None:
    with proxied(tmp_path, lambda _v: [LostAnswer("sendTransaction")]) as (net, proxy):
        tx = _transfer(net, proxy.url)
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected,
                            urllib.error.URLError)):
            _rpc(proxy.url, "sendTransaction", _b64(tx), {"encoding": "base64"})
        eventually(lambda: net.chain.status(tx.signatures[0]) is not None, timeout_s=5,
                   message="the transaction whose answer was lost landed")
        assert proxy.signatures == [str(tx.signatures[0])]


def test_status_lag_hides_new_statuses_and_lags_the_context_slot(tmp_path: Path) -> None:
    with proxied(tmp_path, lambda v: [StatusLag(v, 1.0), NullTransaction(None)]) as (
            net, proxy):
        eventually(lambda: proxy.view.height() > 0, timeout_s=5, message="chain view")
        tx = _transfer(net, proxy.url)
        _rpc(proxy.url, "sendTransaction", _b64(tx), {"encoding": "base64"})
        eventually(lambda: net.chain.status(tx.signatures[0]) is not None, timeout_s=5)
        signature = str(tx.signatures[0])
        lagged = _rpc(proxy.url, "getSignatureStatuses", [signature])["result"]
        assert lagged["value"] == [None]
        assert lagged["context"]["slot"] < net.chain.height
        assert _rpc(proxy.url, "getBlockHeight")["result"] >= net.chain.height - 1
        eventually(lambda: _rpc(proxy.url, "getSignatureStatuses", [signature])["result"][
            "value"][0] is not None, timeout_s=5, message="the status once the lag passed")
        assert _rpc(proxy.url, "getTransaction", signature, {"encoding": "base64"})[
            "result"] is None


def test_simulation_without_balances_and_accounts(tmp_path: Path) -> None:
    with proxied(tmp_path, lambda _v: [SimulationWithoutBalances(accounts=False)]) as (
            net, proxy):
        tx = _transfer(net, proxy.url)
        key = str(net.world.trader.pubkey())
        value = _rpc(proxy.url, "simulateTransaction", _b64(tx), {
            "encoding": "base64", "accounts": {"addresses": [key], "encoding": "base64"}})[
            "result"]["value"]
        assert value["err"] is None
        assert value["accounts"] is None
        assert value["preTokenBalances"] is None
        assert value["postBalances"] is None


def test_short_last_valid_rewrites_the_order(tmp_path: Path) -> None:
    with proxied(tmp_path, lambda _v: [ShortLastValid(100)]) as (net, proxy):
        world = net.world
        query = (f"inputMint={world.assets['USDT'].mint}&outputMint={world.assets['SOL'].mint}"
                 f"&amount=1000000&taker={world.trader.pubkey()}")
        with urllib.request.urlopen(f"{proxy.url}/swap/v2/order?{query}", timeout=10) as page:
            order = json.loads(page.read())
        real_last_valid = net.chain.latest_blockhash()[1]
        assert real_last_valid - 100 - 5 <= order["lastValidBlockHeight"] <= real_last_valid - 100
        VersionedTransaction.from_bytes(base64.b64decode(order["transaction"]))
        assert Pubkey.from_string(order["taker"]) == world.trader.pubkey()


def test_stale_blockhash_is_old_maker_signed_and_still_lands(tmp_path: Path) -> None:
    with proxied(tmp_path, lambda v: [StaleBlockhash(v, blocks_left=(40,))]) as (net, proxy):
        manifest = tmp_path / "localnet.json"
        manifest.write_text(json.dumps({"url": net.url, "trader_keypair": str(
            net.world.trader_key_path)}))
        eventually(lambda: proxy.view.height() > 200, timeout_s=30, message="200 blocks")
        world = net.world
        query = (f"inputMint={world.assets['USDT'].mint}&outputMint={world.assets['SOL'].mint}"
                 f"&amount=1000000&taker={world.trader.pubkey()}")
        with urllib.request.urlopen(f"{proxy.url}/swap/v2/order?{query}", timeout=10) as page:
            order = json.loads(page.read())
        height = net.chain.height
        assert height + 30 <= order["lastValidBlockHeight"] <= height + 41
        tx = VersionedTransaction.from_bytes(base64.b64decode(order["transaction"]))
        assert tx.message.recent_blockhash != net.chain.latest_blockhash()[0]
        signed = sign(tx, world.trader)
        assert all(signed.verify_with_results())
        _rpc(proxy.url, "sendTransaction", _b64(signed), {"encoding": "base64"})
        eventually(lambda: net.chain.status(signed.signatures[0]) is not None, timeout_s=5,
                   message="the stale-but-valid swap landed")
