"""A client for the Jupiter swap API by base URL: Swap v2 (order/execute) and legacy v1.

Both shapes end in the same thing for the venue: an unsigned-by-us versioned transaction,
its ``lastValidBlockHeight`` and, for v2, the ``requestId`` that ``/execute`` needs. The API
key goes in the ``x-api-key`` header and nowhere else (never logged).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any, Final

import httpx2
from solders.transaction import VersionedTransaction

from pipeline.executor.solana.config import SolanaConfig
from pipeline.solana.rpc import Retrier, TemporaryError

# Where an error body names what went wrong: Jupiter's own, then common gateway shapes.
_ERROR_CODE_FIELDS: Final = ("errorCode", "error", "message")
_SNIPPET_CHARS: Final = 200


def _snippet(text: str) -> str:
    """The start of a body for an error message, on one line."""
    return re.sub(r"\s+", " ", text).strip()[:_SNIPPET_CHARS]


class SwapRejectedError(Exception):
    """The swap API refused the request (no route, bad amount...): not worth retrying."""


@dataclasses.dataclass(frozen=True)
class Built:
    tx: VersionedTransaction
    last_valid_height: int
    request_id: str  # empty for v1
    in_amount: int
    out_amount: int
    min_out: int  # otherAmountThreshold: the least the quote lets the transaction pay out


class SwapApi:
    def __init__(self, base_url: str, api_key: str, config: SolanaConfig,
                 retrier: Retrier) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self._api_key = api_key
        self._http = httpx2.AsyncClient(base_url=base_url.rstrip("/"), headers=headers,
                                        timeout=config.rpc_timeout_s)
        self._config = config
        self._retrier = retrier

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        return await self._retrier.call(path, lambda: self._send("GET", path, params=params))

    async def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._http.request(method, path, **kwargs)
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if status == 429 or status >= 500:
            raise TemporaryError(self._describe(path, response, body))
        if not isinstance(body, dict):
            if status == 200:  # a proxy's page in place of the API's answer: try again
                raise TemporaryError(self._describe(path, response, body))
            raise SwapRejectedError(self._describe(path, response, body))
        if status != 200 or "errorCode" in body:
            raise SwapRejectedError(self._describe(path, response, body))
        return body

    def _describe(self, path: str, response: httpx2.Response, body: object) -> str:
        """``path: HTTP status: code: message`` from a JSON error body, or the first
        characters of any other body. Never the request's headers, and the API key is
        masked should a server echo it."""
        text = f"{path}: HTTP {response.status_code}"
        if isinstance(body, dict):
            code = next((body[k] for k in _ERROR_CODE_FIELDS if body.get(k)), None)
            message = body.get("errorMessage")
            detail = ": ".join(_snippet(str(part)) for part in (code, message) if part)
            text += f": {detail or 'no error field in ' + _snippet(json.dumps(body))}"
        else:
            snippet = _snippet(response.text)
            text += f", not JSON: {snippet}" if snippet else ", empty body"
        return text.replace(self._api_key, "***") if self._api_key else text

    async def build(self, input_mint: str, output_mint: str, amount: int,
                    taker: str) -> Built:
        """A transaction swapping ``amount`` base units of input for output, for ``taker``."""
        params = {"inputMint": input_mint, "outputMint": output_mint, "amount": str(amount)}
        if self._config.api == "v2":
            body = await self._get("/swap/v2/order", {**params, "taker": taker})
            if not body.get("transaction"):
                raise SwapRejectedError("/swap/v2/order returned no transaction")
            return _built(body["transaction"], body, str(body.get("requestId", "")))
        quote = await self._get("/swap/v1/quote", {
            **params, "slippageBps": str(self._config.slippage_bps), "swapMode": "ExactIn"})
        swap_body = {"userPublicKey": taker, "quoteResponse": quote,
                     "wrapAndUnwrapSol": True, "dynamicComputeUnitLimit": True,
                     "prioritizationFeeLamports": self._config.compute_unit_limit
                     * self._config.compute_unit_price_micro_lamports // 1_000_000}
        swap = await self._retrier.call("/swap/v1/swap", lambda: self._send(
            "POST", "/swap/v1/swap", json=swap_body))
        return _built(swap["swapTransaction"], {**quote, **swap}, "")

    async def execute(self, signed: VersionedTransaction, request_id: str) -> dict[str, Any]:
        """POST /execute once (re-posting a signed order is the venue's call, not ours)."""
        payload = {"signedTransaction": base64.b64encode(bytes(signed)).decode(),
                   "requestId": request_id}
        response = await self._http.post("/swap/v2/execute", json=payload)
        if response.status_code == 429 or response.status_code >= 500:
            raise TemporaryError(f"/execute: HTTP {response.status_code}")
        result: dict[str, Any] = response.json()
        return result

    async def close(self) -> None:
        await self._http.aclose()


def _built(tx_b64: str, body: dict[str, Any], request_id: str) -> Built:
    try:
        tx = VersionedTransaction.from_bytes(base64.b64decode(tx_b64))
        out_amount = int(body["outAmount"])
        return Built(tx, int(body["lastValidBlockHeight"]), request_id, int(body["inAmount"]),
                     out_amount, int(body.get("otherAmountThreshold", out_amount)))
    except (KeyError, ValueError, TypeError) as exc:
        raise SwapRejectedError(f"malformed swap response: {exc}") from None
