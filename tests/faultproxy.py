"""A fault-injecting proxy between the pipeline and ``pipeline localnet`` (issue 12, item 5).

The executor and the ledger's chain watch are pointed at this proxy (``executor.solana.
rpc_url`` and ``swap_url``); it forwards JSON-RPC (``POST /``, batches element by element)
and the swap API (``/swap/...``) to the localnet named in the data directory's manifest, read
lazily because the localnet picks a free port when it starts after the proxy. On the way
each exchange passes through the scenario's :class:`Fault` s (see ``faultscenarios``), which
may answer in the upstream's place, rewrite its answer, hold it, or reset the connection.

It records every transaction signature that leaves the pipeline (``sendTransaction`` and
``/swap/v2/execute``) and counts the faults it served, so a test can tell a run that met no
fault from one that rode through them. HTTP/1.1 with Content-Length and TCP_NODELAY: the
clients keep their connections, as they would with a real provider.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import functools
import http.client
import io
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from solders.transaction import VersionedTransaction

JSON_HEADERS = (("Content-Type", "application/json"),)


@dataclasses.dataclass(frozen=True)
class Reply:
    """Answer this instead (HTTP status, JSON body, extra headers)."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Reset:
    """Close the client's connection with a TCP reset and no answer."""


@dataclasses.dataclass(frozen=True)
class Hold:
    """Keep the answer until ``until()`` is true or ``cap_s`` passed, then send it."""

    cap_s: float
    until: Callable[[], bool] = lambda: False


Verdict = Reply | Reset | Hold


@dataclasses.dataclass
class Exchange:
    """One call as the proxy sees it: a JSON-RPC method or a swap API path."""

    method: str  # JSON-RPC method, or the swap API path ("/swap/v2/order")
    params: Any  # JSON-RPC params, the query (GET) or the JSON body (POST)
    request_id: Any = None
    status: int = 0  # upstream HTTP status, once forwarded
    answer: Any = None  # upstream JSON answer, once forwarded; faults may rewrite it


class Fault:
    """One misbehaviour. ``served`` counts the exchanges it changed (each fault calls
    ``count()`` when it acts)."""

    def __init__(self) -> None:
        self.served = 0
        self._lock = threading.Lock()

    def intercept(self, exchange: Exchange) -> Verdict | None:
        """Before forwarding: a verdict answers without asking the upstream."""
        return None

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        """After forwarding: may edit ``exchange.answer`` in place, or return a verdict."""
        return None

    def count(self) -> None:
        with self._lock:
            self.served += 1


def rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": request_id}


class Upstream:
    """The localnet's base URL from its manifest, read when first needed and re-read after a
    connection failure (a restarted localnet listens elsewhere)."""

    def __init__(self, manifest: Path) -> None:
        self._manifest = manifest
        self._address: tuple[str, int] | None = None

    def manifest(self) -> dict[str, Any] | None:
        """The localnet's manifest (url, key files, mints), None while it is not up."""
        try:
            data: dict[str, Any] = json.loads(self._manifest.read_text())
        except (OSError, ValueError):
            return None
        return data

    def address(self) -> tuple[str, int] | None:
        if self._address is None:
            manifest = self.manifest()
            if manifest is None or "url" not in manifest:
                return None
            url = urllib.parse.urlsplit(manifest["url"])
            self._address = (url.hostname or "127.0.0.1", url.port or 80)
        return self._address

    def forget(self) -> None:
        self._address = None

    def connect(self) -> http.client.HTTPConnection | None:
        address = self.address()
        if address is None:
            return None
        conn = http.client.HTTPConnection(*address, timeout=30)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


@dataclasses.dataclass(frozen=True)
class Block:
    """One block as the chain view saw it: when, its height, its blockhash and the last
    height at which that blockhash is valid."""

    seen_at: float  # time.monotonic()
    height: int
    blockhash: str
    last_valid_height: int


class ChainView:
    """The upstream's blocks over time (``getLatestBlockhash`` polled), so a fault can answer
    from a view of the chain some seconds old, wait for a height or pick an old blockhash."""

    def __init__(self, upstream: Upstream, interval_s: float = 0.02) -> None:
        self.upstream = upstream
        self._interval_s = interval_s
        self._history: collections.deque[Block] = collections.deque(maxlen=20_000)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="chain-view", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def height(self) -> int:
        with self._lock:
            return self._history[-1].height if self._history else 0

    def height_at(self, monotonic_s: float) -> int:
        """The highest height seen at or before ``monotonic_s`` (0 before the first)."""
        with self._lock:
            seen = [b.height for b in self._history if b.seen_at <= monotonic_s]
        return max(seen, default=0)

    def blockhash_valid_until(self, height: int) -> Block | None:
        """The oldest block seen whose blockhash is still valid at ``height``."""
        with self._lock:
            return next((b for b in self._history if b.last_valid_height >= height), None)

    def _poll(self) -> None:
        conn: http.client.HTTPConnection | None = None
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash"}).encode()
        while not self._stop.wait(self._interval_s):
            try:
                conn = conn or self.upstream.connect()
                if conn is None:
                    continue
                conn.request("POST", "/", body, dict(JSON_HEADERS))
                result = json.loads(conn.getresponse().read())["result"]
                block = Block(time.monotonic(), int(result["context"]["slot"]),
                              str(result["value"]["blockhash"]),
                              int(result["value"]["lastValidBlockHeight"]))
            except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                continue
            with self._lock:
                if not self._history or self._history[-1].height != block.height:
                    self._history.append(block)
        if conn is not None:
            conn.close()


class FaultProxy:
    """Serves on 127.0.0.1 (any free port) until ``stop()``; see module doc."""

    def __init__(self, manifest: Path, faults: Callable[[ChainView], Sequence[Fault]]) -> None:
        self.upstream = Upstream(manifest)
        self.view = ChainView(self.upstream)
        self.faults = list(faults(self.view))
        self.signatures: list[str] = []  # every transaction sent through us, first send order
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._http = _QuietServer(("127.0.0.1", 0), _handler_class(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="fault-proxy",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.view.start()
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)
        self.view.stop()

    def faults_served(self) -> int:
        return sum(fault.served for fault in self.faults)

    def record(self, signed_b64: Any) -> None:
        """Remember the signature of a transaction on its way out (base64 wire bytes)."""
        try:
            tx = VersionedTransaction.from_bytes(base64.b64decode(str(signed_b64)))
        except ValueError:
            return  # not a transaction: the upstream will say so
        signature = str(tx.signatures[0])
        with self._lock:
            if signature not in self._seen:
                self._seen.add(signature)
                self.signatures.append(signature)

    def decide(self, exchange: Exchange, forward: Callable[[], None]) -> Verdict | None:
        """Run ``exchange`` through the faults around ``forward`` (which fills in the
        upstream's answer); the first verdict wins."""
        if exchange.method == "sendTransaction" and exchange.params:
            self.record(exchange.params[0])
        elif exchange.method == "/swap/v2/execute" and isinstance(exchange.params, dict):
            self.record(exchange.params.get("signedTransaction"))
        for fault in self.faults:
            verdict = fault.intercept(exchange)
            if verdict is not None:
                return verdict
        forward()
        chosen: Verdict | None = None
        for fault in self.faults:
            chosen = fault.rewrite(exchange) or chosen
        return chosen


class _QuietServer(ThreadingHTTPServer):
    """A client dropping its connection (a timeout, a shutdown) is routine here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_class(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        _conn: http.client.HTTPConnection | None = None

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def finish(self) -> None:
            if self._conn is not None:
                self._conn.close()
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # -- upstream ----------------------------------------------------------------------
        def _upstream(self, method: str, path: str, body: bytes | None
                      ) -> tuple[int, bytes, list[tuple[str, str]]]:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("content-type", "x-api-key", "accept")}
            for attempt in (1, 2):  # a kept-alive connection the upstream dropped: once more
                try:
                    self._conn = self._conn or proxy.upstream.connect()
                    if self._conn is None:
                        return 502, b'{"error": "no localnet manifest yet"}', []
                    self._conn.request(method, path, body, headers)
                    response = self._conn.getresponse()
                    return response.status, response.read(), response.getheaders()
                except (OSError, http.client.HTTPException):
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    proxy.upstream.forget()
                    if attempt == 2:
                        return 502, b'{"error": "upstream unreachable"}', []
            raise AssertionError("unreachable")

        # -- client side -------------------------------------------------------------------
        def _send(self, status: int, body: bytes,
                  headers: Sequence[tuple[str, str]] = ()) -> None:
            self.send_response(status)
            for name, value in (*JSON_HEADERS, *headers):
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (a held answer)

        def _reset(self) -> None:
            """No answer at all: SO_LINGER 0 makes close() send a RST, not a FIN."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.rfile.close()  # drop the file objects' references: close() then really
            self.wfile.close()  # closes the socket (and sends the RST)
            self.connection.close()
            self.wfile = io.BytesIO()  # http.server flushes after each request: a sink

        def _hold(self, hold: Hold) -> None:
            deadline = time.monotonic() + hold.cap_s
            while time.monotonic() < deadline and not hold.until():
                if proxy.stopping.wait(0.02):
                    return

        def _deliver(self, verdict: Verdict | None, status: int, body: Any,
                     headers: Sequence[tuple[str, str]] = ()) -> None:
            if isinstance(verdict, Reset):
                self._reset()
                return
            if isinstance(verdict, Reply):
                self._send(verdict.status, json.dumps(verdict.body).encode(), verdict.headers)
                return
            if isinstance(verdict, Hold):
                self._hold(verdict)
            self._send(status, body if isinstance(body, bytes) else json.dumps(body).encode(),
                       headers)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            exchange = Exchange(url.path, dict(urllib.parse.parse_qsl(url.query)))
            self._swap(exchange, "GET", None)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = urllib.parse.urlsplit(self.path).path
            try:
                body = json.loads(raw)
            except ValueError:
                status, answer, _ = self._upstream("POST", self.path, raw)
                self._send(status, answer)
                return
            if path != "/":
                self._swap(Exchange(path, body), "POST", raw)
            elif isinstance(body, list):
                self._batch(body)
            else:
                exchange = self._rpc_exchange(body)
                verdict = proxy.decide(exchange, lambda: self._forward_rpc(exchange, body))
                self._deliver(verdict, exchange.status or 200, exchange.answer)

        def _rpc_exchange(self, body: Any) -> Exchange:
            if not isinstance(body, dict):
                return Exchange("", [], None)
            return Exchange(str(body.get("method", "")), body.get("params", []), body.get("id"))

        def _forward_rpc(self, exchange: Exchange, body: Any) -> None:
            status, answer, _ = self._upstream("POST", "/", json.dumps(body).encode())
            exchange.status = status
            try:
                exchange.answer = json.loads(answer)
            except ValueError:
                exchange.answer = {"error": answer.decode(errors="replace")}

        def _batch(self, body: list[Any]) -> None:
            """Each element on its own through the faults; a transport verdict (a reset, an
            HTTP error) of any element applies to the whole batch, as it would."""
            answers: list[Any] = []
            transport: Verdict | None = None
            for item in body:
                exchange = self._rpc_exchange(item)
                verdict = proxy.decide(exchange, functools.partial(self._forward_rpc,
                                                                   exchange, item))
                if isinstance(verdict, Reply) and verdict.status == 200:
                    answers.append(verdict.body)
                    continue
                transport = transport or verdict
                answers.append(exchange.answer)
            self._deliver(transport, 200, answers)

        def _swap(self, exchange: Exchange, method: str, raw: bytes | None) -> None:
            def forward() -> None:
                status, answer, _ = self._upstream(method, self.path, raw)
                exchange.status = status
                try:
                    exchange.answer = json.loads(answer)
                except ValueError:
                    exchange.answer = answer
            verdict = proxy.decide(exchange, forward)
            self._deliver(verdict, exchange.status, exchange.answer)

    return Handler


__all__ = ["Block", "ChainView", "Exchange", "Fault", "FaultProxy", "Hold", "Reply", "Reset",
           "rpc_error"]
