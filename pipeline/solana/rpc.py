"""Retries with back-off for the venue's network calls (RPC and swap API).

Temporary failures (HTTP 429 and 5xx, timeouts, connection errors, JSON-RPC "node is
behind") are retried with exponential back-off and jitter, a bounded number of times; any
other error is raised at once. Nothing here blocks the executor's tick path: it runs on the
venue's own event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx2
from solana.exceptions import SolanaRpcException
from solana.rpc.core import RPCException
from solana.rpc.jsonrpc import SolanaJsonRpcError
from solders.rpc.errors import (
    BlockNotAvailableMessage,
    BlockStatusNotAvailableYetMessage,
    InternalErrorMessage,
    MethodNotFoundMessage,
    MinContextSlotNotReachedMessage,
    NodeUnhealthyMessage,
)

T = TypeVar("T")
_MAX_DELAY_S = 2.0
METHOD_NOT_FOUND = -32601
_TEMPORARY_RPC_CODES = (-32005, -32004, -32603)  # node behind, block not available, internal
_TEMPORARY_RPC_ERRORS = (NodeUnhealthyMessage, BlockNotAvailableMessage, InternalErrorMessage,
                         MinContextSlotNotReachedMessage, BlockStatusNotAvailableYetMessage)


class TemporaryError(Exception):
    """A failure worth retrying (rate limit, server error, timeout)."""


class MalformedAnswerError(Exception):
    """The RPC answered something its client library could not parse (solders panics)."""


def is_temporary(exc: BaseException) -> bool:
    if isinstance(exc, MalformedAnswerError):
        return True
    if isinstance(exc, TemporaryError | SolanaRpcException | httpx2.TransportError
                  | asyncio.TimeoutError):
        return True
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    if isinstance(exc, SolanaJsonRpcError):
        return exc.code in _TEMPORARY_RPC_CODES
    if isinstance(exc, RPCException) and exc.args:
        # solders parses known codes into typed messages (without ``code``); others keep it.
        return isinstance(exc.args[0], _TEMPORARY_RPC_ERRORS) \
            or getattr(exc.args[0], "code", None) in _TEMPORARY_RPC_CODES
    return False


def rpc_error_code(exc: BaseException) -> int | None:
    """The JSON-RPC error code behind ``exc``, if it is a JSON-RPC error answer."""
    if isinstance(exc, SolanaJsonRpcError):
        return exc.code
    if isinstance(exc, RPCException) and exc.args:
        if isinstance(exc.args[0], MethodNotFoundMessage):  # solders keeps no code for it
            return METHOD_NOT_FOUND
        code = getattr(exc.args[0], "code", None)
        return code if isinstance(code, int) else None
    return None


class Retrier:
    """``await retrier.call(make_coroutine)``: retry temporary failures with back-off."""

    def __init__(self, attempts: int, backoff_s: float, timeout_s: float,
                 log: logging.Logger, on_retry: Callable[[str], None] | None = None) -> None:
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._log = log
        self._on_retry = on_retry or (lambda _what: None)
        self.retries = 0

    async def call(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                return await asyncio.wait_for(make(), self._timeout_s)
            except BaseException as exc:
                if type(exc).__name__ == "PanicException":
                    # solders panics (a BaseException) on a JSON-RPC answer it cannot parse;
                    # a bad answer must not kill the venue's loop.
                    exc = MalformedAnswerError(f"{what}: unparseable answer: {exc}")
                elif not isinstance(exc, Exception):
                    raise
                if not is_temporary(exc) or attempt == self._attempts:
                    raise exc from None
                self.retries += 1
                self._on_retry(what)
                self._log.warning("%s failed (%s); retry %d in %.2f s", what,
                                  type(exc).__name__, attempt, delay,
                                  extra={"event": "solana.retry", "call": what})
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _MAX_DELAY_S)
        raise AssertionError("unreachable")
