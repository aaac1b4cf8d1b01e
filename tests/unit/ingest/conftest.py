"""Local HTTP servers for the live-source tests: real sockets on 127.0.0.1, never the internet."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

# A route answers (status, headers, body); it may sleep to play a slow provider.
Route = Callable[["Request"], tuple[int, dict[str, str], bytes]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    url: str
    routes: dict[str, Route]
    requests: list[Request] = field(default_factory=list)

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)


def json_reply(payload: Any, status: int = 200,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, \
        json.dumps(payload).encode()


def slow(route: Route, delay_s: float) -> Route:
    def answer(request: Request) -> tuple[int, dict[str, str], bytes]:
        time.sleep(delay_s)  # the provider is slow; the client must time out first
        return route(request)
    return answer


@pytest.fixture
def local_http() -> Iterator[Callable[[dict[str, Route]], LocalServer]]:
    """Start HTTP/1.1 servers on 127.0.0.1 (port 0) serving the given routes."""
    servers: list[ThreadingHTTPServer] = []

    def start(routes: dict[str, Route]) -> LocalServer:
        state = LocalServer("", routes)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, parts.path, parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length))
                state.requests.append(request)
                route = state.routes.get(parts.path)
                status, headers, body = (route(request) if route else
                                         (404, {"Content-Type": "text/plain"}, b"no route"))
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            do_GET = _answer  # noqa: N815
            do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
