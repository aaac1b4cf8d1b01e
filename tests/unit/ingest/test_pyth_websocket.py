"""accountSubscribe over a local websocket server, and the fall-back to RPC polling."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import LocalServer, Route
from test_pyth_live import ACCOUNT, FEED, rpc_route, symbols
from testkit import eventually
from websockets.asyncio.server import ServerConnection, serve

from pipeline.ingest.config import IngestConfig
from pipeline.ingest.live import make_live_feed
from pipeline.ingest.pyth import PUSH_ORACLE_PROGRAM, encode_price_update
from pipeline.ingest.source_config import LiveConfig

Start = Callable[[dict[str, Route]], LocalServer]
S = 10**9


def notification(subscription: int, publish_s: int) -> str:
    data = encode_price_update(FEED, 14_500_000_000, 7_000_000, -8, publish_s)
    return json.dumps({"jsonrpc": "2.0", "method": "accountNotification", "params": {
        "subscription": subscription, "result": {"context": {"slot": 400}, "value": {
            "data": [base64.b64encode(data).decode(), "base64"], "executable": False,
            "lamports": 2_000_000, "owner": PUSH_ORACLE_PROGRAM, "rentEpoch": 0,
            "space": len(data)}}}})


@pytest.fixture
def ws_server() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A Solana-style websocket endpoint: confirms accountSubscribe, then pushes one update."""
    requests: list[dict[str, object]] = []
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def handler(conn: ServerConnection) -> None:
        async for raw in conn:
            call = json.loads(raw)
            requests.append(call)
            await conn.send(json.dumps({"jsonrpc": "2.0", "result": 42, "id": call["id"]}))
            await conn.send(notification(42, int(time.time())))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            holder["url"] = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            holder["stop"] = asyncio.get_running_loop().create_future()
            ready.set()
            await holder["stop"]  # type: ignore[misc]

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(5.0)
    yield str(holder["url"]), requests
    loop.call_soon_threadsafe(holder["stop"].set_result, None)  # type: ignore[attr-defined]
    thread.join(5.0)
    loop.close()


def test_subscription_delivers_and_pauses_polling(ws_server: tuple[str, list[dict[str, object]]],
                                                  local_http: Start, tmp_path: Path) -> None:
    url, requests = ws_server
    rpc = local_http({"/": rpc_route(encode_price_update(FEED, 14_237_000_000, 7_000_000, -8,
                                                         int(time.time()) - 5))})
    live = LiveConfig(rpc_urls=(rpc.url,), ws_urls=(url,), poll_interval_s=0.05)
    feed = make_live_feed(IngestConfig(feed="pyth", live=live), symbols(), tmp_path)
    prices: list[float] = []
    try:
        def streamed() -> bool:
            prices.extend(feed.poll(time.monotonic_ns(), 100)["price"].tolist())
            return feed.streaming and 145.0 in prices
        eventually(streamed, timeout_s=10.0)
        polls = rpc.hits("/")
        eventually(lambda: feed.streaming, timeout_s=1.0)
    finally:
        feed.close()
    call = requests[0]
    assert call["method"] == "accountSubscribe"
    params = call["params"]
    assert isinstance(params, list)
    assert params[0] == ACCOUNT
    assert (params[1]["encoding"], params[1]["commitment"]) == ("base64", "confirmed")
    assert polls <= 2  # at most the polls made before the subscription was confirmed


def test_websocket_failure_falls_back_to_polling(local_http: Start, tmp_path: Path) -> None:
    rpc = local_http({"/": rpc_route(encode_price_update(FEED, 14_237_000_000, 7_000_000, -8,
                                                         int(time.time())))})
    live = LiveConfig(rpc_urls=(rpc.url,), ws_urls=("ws://127.0.0.1:9",), poll_interval_s=0.05)
    errors: list[tuple[str, str]] = []
    feed = make_live_feed(IngestConfig(feed="pyth", live=live), symbols(), tmp_path,
                          on_error=lambda source, why: errors.append((source, why)))
    got: list[np.ndarray] = []
    try:
        eventually(lambda: bool(got.append(feed.poll(time.monotonic_ns(), 10)) or
                                sum(len(g) for g in got)), timeout_s=10.0)
        eventually(lambda: ("pyth", "websocket") in errors, timeout_s=10.0)
    finally:
        feed.close()
    assert not feed.streaming
    assert np.concatenate(got)["price"][0] == pytest.approx(142.37)
