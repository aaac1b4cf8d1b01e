"""Swap API errors name the HTTP status and the body's error field, never "None: None".

A tiny HTTP server on 127.0.0.1 answers ``/swap/v2/order`` with each error shape seen from
Jupiter and from the gateways in front of it; the client's exception message is checked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.executor.solana.config import SolanaConfig
from pipeline.executor.solana.swapapi import SwapApi, SwapRejectedError
from pipeline.solana.rpc import Retrier, TemporaryError

API_KEY = "test-jupiter-key-0123456789"
MINT = "So11111111111111111111111111111111111111112"


class Answer:
    """What the server says next: status, content type, body; and what it was asked."""

    def __init__(self) -> None:
        self.status = 200
        self.content_type = "application/json"
        self.body = b"{}"
        self.paths: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Answer]]:
    answer = Answer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            answer.paths.append(self.path)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answer
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _order_error(url: str) -> BaseException:
    """The exception ``build`` raises against the server (one try, no retries)."""
    config = SolanaConfig(api="v2", rpc_timeout_s=5.0)

    async def go() -> BaseException:
        api = SwapApi(url, API_KEY, config,
                      Retrier(1, 0.0, 5.0, logging.getLogger("test")))
        try:
            await api.build(MINT, MINT, 1000, MINT)
        except Exception as exc:
            return exc
        finally:
            await api.close()
        raise AssertionError("build did not fail")

    return asyncio.run(go())


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, b'{"errorCode": "NO_ROUTES_FOUND", "errorMessage": "no route for this pair"}',
     "/swap/v2/order: HTTP 400: NO_ROUTES_FOUND: no route for this pair"),
    (400, b'{"error": "Invalid inputMint"}', "/swap/v2/order: HTTP 400: Invalid inputMint"),
    (401, b'{"message": "Unauthorized"}', "/swap/v2/order: HTTP 401: Unauthorized"),
    (200, b'{"errorCode": 2, "errorMessage": "amount too small"}',
     "/swap/v2/order: HTTP 200: 2: amount too small"),
    (422, b'{"detail": "x"}', '/swap/v2/order: HTTP 422: no error field in {"detail": "x"}'),
])
def test_json_error_bodies_name_status_and_error_field(
    server: tuple[str, Answer], status: int, body: bytes, expected: str
) -> None:
    url, answer = server
    answer.status, answer.body = status, body
    error = _order_error(url)
    assert isinstance(error, SwapRejectedError)
    assert str(error) == expected
    assert "None" not in str(error)


def test_a_non_json_body_is_quoted_short_and_on_one_line(server: tuple[str, Answer]) -> None:
    url, answer = server
    answer.status, answer.content_type = 404, "text/html"
    answer.body = b"<html>\n  <body>Not   Found</body>\n</html>" + b"x" * 1000
    error = _order_error(url)
    assert isinstance(error, SwapRejectedError)
    text = str(error)
    assert text.startswith("/swap/v2/order: HTTP 404, not JSON: <html> <body>Not Found</body>")
    assert len(text) < 260


def test_an_empty_error_body_says_so(server: tuple[str, Answer]) -> None:
    url, answer = server
    answer.status, answer.body = 403, b""
    assert str(_order_error(url)) == "/swap/v2/order: HTTP 403, empty body"


def test_the_api_key_never_appears_even_when_echoed(server: tuple[str, Answer]) -> None:
    url, answer = server
    answer.status = 403
    answer.body = f'{{"error": "key {API_KEY} is not allowed"}}'.encode()
    text = str(_order_error(url))
    assert API_KEY not in text
    assert text == "/swap/v2/order: HTTP 403: key *** is not allowed"
    answer.content_type, answer.body = "text/plain", f"x-api-key: {API_KEY}".encode()
    assert API_KEY not in str(_order_error(url))


@pytest.mark.parametrize("status", [429, 502])
def test_rate_limits_and_server_errors_stay_temporary_and_named(
    server: tuple[str, Answer], status: int
) -> None:
    url, answer = server
    answer.status, answer.body = status, b'{"error": "slow down"}'
    error = _order_error(url)
    assert isinstance(error, TemporaryError)
    assert str(error) == f"/swap/v2/order: HTTP {status}: slow down"


def test_a_200_page_that_is_not_json_is_temporary(server: tuple[str, Answer]) -> None:
    url, answer = server
    answer.content_type, answer.body = "text/html", b"<html>maintenance</html>"
    error = _order_error(url)
    assert isinstance(error, TemporaryError)
    assert str(error) == "/swap/v2/order: HTTP 200, not JSON: <html>maintenance</html>"
    assert [p.split("?")[0] for p in answer.paths] == ["/swap/v2/order"]  # asked once
