"""The localnet's HTTP server: Solana JSON-RPC at ``/``, the maker under ``/swap``, blocks.

HTTP/1.1 with Content-Length and TCP_NODELAY, so clients keep one connection (the default
HTTP/1.0 handler makes every call reconnect). A block producer thread makes a block every
``block_interval_s`` unless paused.

``POST /admin`` takes test and drill controls: ``{"paused": true}`` stops block production
(sent transactions wait, unconfirmed) and ``{"faults": [{"kind": "429" | "500" | "error" |
"delay", "count": n, "method": "getSignatureStatuses", "delay_s": 2}]}`` makes the next
``count`` JSON-RPC calls (of ``method``, or any) answer HTTP 429, HTTP 500, a JSON-RPC error
or late; ``{"clear_faults": true}`` drops the pending ones. Two kinds shape the answers of
``simulateTransaction`` (their ``method`` defaults to it) as older or restricted nodes give
them: ``"sim_no_balances"`` answers null for the four balance fields (``preBalances``,
``postBalances``, ``preTokenBalances``, ``postTokenBalances``: Agave added them only in
2025) and ``"sim_no_accounts"`` also ignores the ``accounts`` option (``accounts`` null).
Every answer carries the block height and the signatures waiting for the next block. The
executor must ride through all of them.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from pipeline.localnet.chain import ChainError, LocalChain
from pipeline.localnet.maker import Maker, SwapError
from pipeline.localnet.rpc import RpcMethods, envelope, error_envelope

_SIMULATION_FAULTS: Final = ("sim_no_balances", "sim_no_accounts")
_BALANCE_FIELDS: Final = ("preBalances", "postBalances", "preTokenBalances", "postTokenBalances")


@dataclasses.dataclass
class Fault:
    # "429" | "500" | "error" | "delay" | "method_not_found" (-32601, as providers that
    # restrict a method answer) | "sim_no_balances" | "sim_no_accounts"
    kind: str
    count: int
    method: str = ""  # empty: any method
    delay_s: float = 0.0


class Controls:
    """Pause and injected faults, shared by the handler threads and the block producer."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.faults_served = 0

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        if "paused" in body:
            if body["paused"]:
                self.paused.set()
            else:
                self.paused.clear()
        with self._lock:
            if body.get("clear_faults"):
                self._faults.clear()
            for item in body.get("faults", []):
                kind = str(item["kind"])
                default_method = "simulateTransaction" if kind in _SIMULATION_FAULTS else ""
                fault = Fault(kind, int(item["count"]), str(item.get("method", default_method)),
                              float(item.get("delay_s", 0.0)))
                if fault.kind not in ("429", "500", "error", "delay", "method_not_found",
                                      *_SIMULATION_FAULTS):
                    raise ValueError(f"unknown fault kind {fault.kind!r}")
                self._faults.append(fault)
            return {"paused": self.paused.is_set(), "faults_pending": len(self._faults),
                    "faults_served": self.faults_served}

    def take(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in ("", method):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    self.faults_served += 1
                    return fault
        return None


class LocalnetServer:
    """Serves one chain and one maker on ``(host, port)`` until ``stop()``."""

    def __init__(self, chain: LocalChain, rpc: RpcMethods, maker: Maker, *, host: str, port: int,
                 block_interval_s: float) -> None:
        self.chain = chain
        self.controls = Controls()
        self._block_interval_s = block_interval_s
        self._stopping = threading.Event()
        handler = _handler_class(chain, rpc, maker, self.controls)
        self._http = ThreadingHTTPServer((host, port), handler)
        self._http.daemon_threads = True
        self._threads = [threading.Thread(target=self._http.serve_forever, name="localnet-http",
                                          daemon=True),
                         threading.Thread(target=self._produce, name="localnet-blocks",
                                          daemon=True)]

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _produce(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            next_at += self._block_interval_s
            delay = next_at - time.monotonic()
            if self._stopping.wait(max(delay, 0.0)):
                return
            if delay < -self._block_interval_s:
                next_at = time.monotonic()  # fell behind (host stall): do not burst blocks
            if not self.controls.paused.is_set():
                self.chain.produce_block()


def _handler_class(chain: LocalChain, rpc: RpcMethods, maker: Maker,
                   controls: Controls) -> type[BaseHTTPRequestHandler]:
    routes_get: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
        "/swap/v2/order": maker.order, "/swap/v1/quote": maker.quote_v1}
    routes_post: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "/swap/v2/execute": maker.execute, "/swap/v1/swap": maker.swap_v1,
        "/admin": lambda body: {**controls.apply(body), "height": chain.height,
                                "queued": [str(s) for s in chain.queued_signatures()]}}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the logs

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout, shutdown)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            route = routes_get.get(url.path)
            if route is None:
                self._reply(404, b'{"error": "not found"}')
                return
            params = dict(urllib.parse.parse_qsl(url.query))
            self._swap(lambda: route(params))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                self._reply(400, error_envelope(None, -32700, "Parse error"))
                return
            path = urllib.parse.urlsplit(self.path).path
            if path == "/":
                self._rpc(body)
                return
            route = routes_post.get(path)
            if route is None or not isinstance(body, dict):
                self._reply(404, b'{"error": "not found"}')
                return
            self._swap(lambda: route(body))

        def _swap(self, call: Callable[[], dict[str, Any]]) -> None:
            try:
                self._reply(200, json.dumps(call()).encode())
            except SwapError as exc:
                self._reply(exc.status, json.dumps(
                    {"errorCode": exc.code, "errorMessage": str(exc)}).encode())
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, json.dumps({"errorCode": "INVALID_REQUEST",
                                             "errorMessage": str(exc)}).encode())

        def _rpc(self, body: Any) -> None:
            if not isinstance(body, dict) or not isinstance(body.get("method"), str):
                self._reply(200, error_envelope(None, -32600, "Invalid request"))
                return
            request_id, method = body.get("id"), body["method"]
            fault = controls.take(method)
            if fault is not None and fault.kind in ("429", "500"):
                self._reply(int(fault.kind), b'{"error": "injected fault"}')
                return
            if fault is not None and fault.kind == "error":
                self._reply(200, error_envelope(request_id, -32005, "Node is behind",
                                                {"numSlotsBehind": 42}))
                return
            if fault is not None and fault.kind == "method_not_found":
                self._reply(200, error_envelope(request_id, -32601, "Method not found"))
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay_s)  # an injected slow answer
            try:
                answer = rpc.call(method, body.get("params", []))
            except ChainError as exc:
                self._reply(200, error_envelope(request_id, exc.code, str(exc)))
                return
            if fault is not None and fault.kind in _SIMULATION_FAULTS:
                answer = _older_simulation(answer, fault.kind)
            self._reply(200, envelope(request_id, answer))

    return Handler


def _older_simulation(answer: str, kind: str) -> str:
    """A ``simulateTransaction`` answer as a node without the balance fields (and, for
    ``sim_no_accounts``, without the ``accounts`` option) would give it."""
    body = json.loads(answer)
    value = body.get("result", {}).get("value")
    if isinstance(value, dict):
        for name in _BALANCE_FIELDS + (("accounts",) if kind == "sim_no_accounts" else ()):
            value[name] = None
    return json.dumps(body)
