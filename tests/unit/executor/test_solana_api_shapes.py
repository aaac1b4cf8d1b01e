"""Both Jupiter API shapes and both landings, for real against the localnet's maker.

The default (v2 ``/order``, self-landing) is covered by test_solana_swap.py; here the venue
runs with ``api = "v1"`` (``/swap/v1/quote`` + ``/swap/v1/swap``, self-landing) and with
``landing = "execute"`` (the maker lands it via ``POST /swap/v2/execute``). What the venue
sends is observed from the outside, without mocks: a maker subclass records the Jupiter
endpoints it serves, and a recording proxy in front of the localnet shows each request's
headers and JSON-RPC method (is the API key sent, and only to the swap API? did anything
go out through ``sendTransaction`` when the maker was meant to land it?).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from localnet_kit import (
    Localnet,
    collect,
    fast_config,
    finals,
    intent,
    make_venue,
    running_localnet,
    signatures_of,
)
from solders.signature import Signature

from pipeline.localnet.maker import Maker
from pipeline.records import OrderStatus, RejectReason, Side

API_KEY = "test-jupiter-key-0123456789"


class RecordingMaker(Maker):
    """The localnet maker, unchanged, but remembering which swap endpoints were called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.quotes: list[dict[str, Any]] = []  # every answer of /order and /swap/v1/quote
        self.executed_ids: list[str] = []  # requestId of every POST /execute

    def order(self, params: Mapping[str, str]) -> dict[str, Any]:
        self.calls.append("order")
        body = super().order(params)
        self.quotes.append(body)
        return body

    def execute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("execute")
        self.executed_ids.append(str(body.get("requestId")))
        return super().execute(body)

    def quote_v1(self, params: Mapping[str, str]) -> dict[str, Any]:
        self.calls.append("quote_v1")
        body = super().quote_v1(params)
        self.quotes.append(body)
        return body

    def swap_v1(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("swap_v1")
        return super().swap_v1(body)


class ExpiredOnExecute(RecordingMaker):
    """Quotes honestly, but ``/execute`` answers Jupiter's -2003 without landing anything."""

    def execute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("execute")
        self.executed_ids.append(str(body.get("requestId")))
        return {"status": "Failed", "code": -2003, "error": "quote expired"}


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as it reached the proxy."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    rpc_method: str  # the JSON-RPC method for POST /, else ""


class RecordingProxy:
    """Forwards every request to the localnet and keeps what it carried."""

    def __init__(self, upstream: str) -> None:
        self.seen: list[Seen] = []
        target = urllib.parse.urlsplit(upstream)
        host, port, seen = target.hostname or "127.0.0.1", target.port or 80, self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the localnet server

            def setup(self) -> None:
                super().setup()  # no Nagle: headers and body go out as two writes
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else None
                path = urllib.parse.urlsplit(self.path).path
                rpc_method = ""
                if path == "/" and body:
                    parsed = json.loads(body)
                    rpc_method = str(parsed.get("method", "")) if isinstance(parsed, dict) \
                        else ""
                seen.append(Seen(self.command, path,
                                 {k.lower(): v for k, v in self.headers.items()}, rpc_method))
                upstream_conn = http.client.HTTPConnection(host, port, timeout=10)
                try:
                    upstream_conn.request(self.command, self.path, body,
                                          {"Content-Type": "application/json"})
                    answer = upstream_conn.getresponse()
                    status, data = answer.status, answer.read()
                finally:
                    upstream_conn.close()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.02,),
                                        name="test-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def swap_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/swap/")]

    def rpc_methods(self) -> list[str]:
        return [s.rpc_method for s in self.seen if s.path == "/"]


@contextmanager
def recording_proxy(net: Localnet) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(net.url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _recording(net: Localnet) -> RecordingMaker:
    assert isinstance(net.maker, RecordingMaker)
    return net.maker


def _settled_once(net: Localnet, reports: list[np.ndarray], coid: int) -> str:
    """The order's one signature: NEW before FILLED, both naming it, landed without error."""
    new, = signatures_of(reports, OrderStatus.NEW)
    filled, = signatures_of(reports, OrderStatus.FILLED)
    assert filled == new, "the NEW report carries the signature the fill carries"
    statuses = [int(r["status"]) for r in reports if int(r["client_order_id"]) == coid]
    assert statuses == [OrderStatus.NEW, OrderStatus.FILLED]
    landed = net.chain.status(Signature.from_string(new))
    assert landed is not None
    assert landed.err is None
    return new


def test_v1_buy_and_sell_go_through_quote_and_swap_and_settle_exactly(tmp_path: Path) -> None:
    with running_localnet(tmp_path, maker_class=RecordingMaker) as net, \
            recording_proxy(net) as rpc:
        maker = _recording(net)
        trader_start, maker_start = net.trader_tokens(), net.tokens(net.world.maker.pubkey())
        venue = make_venue(net, config=fast_config(api="v1"), rpc_url=rpc.url)
        try:
            venue.submit(intent(1, Side.BUY, 2.0, 151.0), 0)
            buy = collect(venue, {1})
            mid = net.trader_tokens()
            venue.submit(intent(2, Side.SELL, 1.0, 140.0), 0)
            sell = collect(venue, {2})
        finally:
            venue.close()
        _settled_once(net, buy, 1)
        _settled_once(net, sell, 2)
        assert maker.calls == ["quote_v1", "swap_v1", "quote_v1", "swap_v1"], \
            "v1 never touches /order or /execute"
        assert rpc.rpc_methods().count("sendTransaction") >= 2, "v1 lands its own transactions"
        buy_quote, sell_quote = maker.quotes
        got_sol, got_usdt = int(buy_quote["outAmount"]), int(sell_quote["outAmount"])

        assert int(buy_quote["inAmount"]) == round(2.0 * 150.0 * 1e6)
        assert trader_start["USDT"] - mid["USDT"] == round(2.0 * 150.0 * 1e6)
        assert mid["SOL"] - trader_start["SOL"] == got_sol
        fill = finals(buy)[1]
        assert abs(float(fill["filled_qty"]) - got_sol / 1e9) < 1e-12
        assert abs(float(fill["avg_price"]) * got_sol / 1e9 - 300.0) < 1e-6

        end = net.trader_tokens()
        assert mid["SOL"] - end["SOL"] == 10**9
        assert end["USDT"] - mid["USDT"] == got_usdt
        fill = finals(sell)[2]
        assert float(fill["filled_qty"]) == 1.0
        assert abs(float(fill["avg_price"]) - got_usdt / 1e6) < 1e-9

        maker_end = net.tokens(net.world.maker.pubkey())
        assert {k: maker_end[k] - maker_start[k] for k in maker_end} == \
            {k: trader_start[k] - end[k] for k in end}, "the maker got what the trader gave"


def test_execute_landing_settles_through_the_maker_once(tmp_path: Path) -> None:
    with running_localnet(tmp_path, maker_class=RecordingMaker) as net, \
            recording_proxy(net) as rpc:
        maker = _recording(net)
        trader_start, maker_start = net.trader_tokens(), net.tokens(net.world.maker.pubkey())
        venue = make_venue(net, config=fast_config(landing="execute"), rpc_url=rpc.url)
        try:
            venue.submit(intent(1, Side.SELL, 1.0, 140.0), 0)
            reports = collect(venue, {1})
        finally:
            venue.close()
        _settled_once(net, reports, 1)
        assert maker.calls == ["order", "execute"]
        assert maker.executed == 1, "the maker landed it"
        assert maker.executed_ids == [maker.quotes[0]["requestId"]]
        assert "sendTransaction" not in rpc.rpc_methods(), "the venue did not land it too"
        got_usdt = int(maker.quotes[0]["outAmount"])
        end, maker_end = net.trader_tokens(), net.tokens(net.world.maker.pubkey())
        assert trader_start["SOL"] - end["SOL"] == 10**9
        assert end["USDT"] - trader_start["USDT"] == got_usdt
        assert maker_end["SOL"] - maker_start["SOL"] == 10**9
        assert maker_start["USDT"] - maker_end["USDT"] == got_usdt
        assert abs(float(finals(reports)[1]["avg_price"]) - got_usdt / 1e6) < 1e-9


def test_a_failed_execute_ends_without_a_fill_and_nothing_lands(tmp_path: Path) -> None:
    """/execute answers -2003 and lands nothing: the venue must not fall back to sending the
    signed bytes itself, post each transaction once, and end the order unfilled. A short
    blockhash window lets each transaction expire quickly."""
    with running_localnet(tmp_path, window_blocks=20, maker_class=ExpiredOnExecute) as net, \
            recording_proxy(net) as rpc:
        maker = _recording(net)
        trader = net.world.trader.pubkey()
        trader_start, maker_start = net.trader_tokens(), net.tokens(net.world.maker.pubkey())
        lamports_start = net.chain.account(trader)
        assert lamports_start is not None
        config = fast_config(landing="execute")
        venue = make_venue(net, config=config, rpc_url=rpc.url)
        try:
            venue.submit(intent(1, Side.SELL, 1.0, 140.0), 0)
            reports = collect(venue, {1})
        finally:
            venue.close()
        final = finals(reports)[1]
        assert final["status"] == OrderStatus.REJECTED
        assert final["reject_reason"] == RejectReason.VENUE_ERROR
        assert float(final["filled_qty"]) == 0.0
        signed = signatures_of(reports, OrderStatus.NEW)
        assert 1 <= len(signed) <= config.max_builds
        assert len(set(signed)) == len(signed), "each build is a new transaction"
        assert maker.calls.count("order") == len(signed), "every build was signed"
        assert maker.calls.count("execute") == len(signed), "every signed one was posted"
        assert sorted(maker.executed_ids) == sorted(q["requestId"] for q in maker.quotes)
        assert len(set(maker.executed_ids)) == len(signed), "and posted once"
        assert "sendTransaction" not in rpc.rpc_methods(), "never landed by the venue itself"
        for signature in signed:
            assert net.chain.status(Signature.from_string(signature)) is None
        assert net.chain.queued_signatures() == []
        assert net.trader_tokens() == trader_start
        assert net.tokens(net.world.maker.pubkey()) == maker_start
        account = net.chain.account(trader)
        assert account is not None
        assert account.lamports == lamports_start.lamports, "not even a fee was paid"


@pytest.mark.parametrize(("api", "landing", "paths"), [
    ("v2", "self", ["/swap/v2/order"]),
    ("v2", "execute", ["/swap/v2/order", "/swap/v2/execute"]),
    ("v1", "self", ["/swap/v1/quote", "/swap/v1/swap"]),
])
def test_the_api_key_goes_in_x_api_key_to_the_swap_api_only(
        tmp_path: Path, api: str, landing: str, paths: list[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running_localnet(tmp_path, maker_class=RecordingMaker) as net, \
            recording_proxy(net) as proxy:
        venue = make_venue(net, config=fast_config(api=api, landing=landing),
                           rpc_url=proxy.url, swap_url=proxy.url, api_key=API_KEY)
        try:
            venue.submit(intent(1, Side.SELL, 1.0, 140.0), 0)
            reports = collect(venue, {1})
        finally:
            venue.close()
        assert finals(reports)[1]["status"] == OrderStatus.FILLED
        swaps = proxy.swap_requests()
        assert [s.path for s in swaps] == paths
        assert [s.headers.get("x-api-key") for s in swaps] == [API_KEY] * len(paths)
        rpc = [s for s in proxy.seen if s.path == "/"]
        assert rpc, "the RPC went through the proxy too"
        assert all("x-api-key" not in s.headers for s in rpc), "the key is the swap API's"
        assert API_KEY not in caplog.text, "the key is never logged"


def test_no_api_key_sends_no_header(tmp_path: Path) -> None:
    """An unset key sends no ``x-api-key`` at all, not an empty one."""
    with running_localnet(tmp_path) as net, recording_proxy(net) as proxy:
        venue = make_venue(net, swap_url=proxy.url)
        try:
            venue.submit(intent(1, Side.SELL, 1.0, 140.0), 0)
            reports = collect(venue, {1})
        finally:
            venue.close()
        assert finals(reports)[1]["status"] == OrderStatus.FILLED
        swaps = proxy.swap_requests()
        assert [s.path for s in swaps] == ["/swap/v2/order"]
        assert "x-api-key" not in swaps[0].headers
