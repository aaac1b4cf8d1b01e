"""Probe an RPC and a swap API for every method and field the Solana venue relies on.

Providers differ: some refuse ``getTransaction`` (-32601) or history lookups, older nodes
return no balance fields from ``simulateTransaction``. Finding out at the first order means
booking guesses; the probe asks once at start, harmlessly: unknown signatures, the default
blockhash, the owner's own account, and a simulated self-transfer of 0 lamports (never
signed, never sent). Raw JSON-RPC, so a field left out and a field answered null both count
as missing, whatever a client library would make of them.

A capability may have a fallback (another capability that does its job): the balance fields
fall back to the ``accounts`` option, ``isBlockhashValid`` and ``getEpochInfo`` to
``getBlockHeight``. ``sendTransaction`` cannot be probed without sending and is not.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import Awaitable
from typing import Any, Final

import httpx2
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

_UNKNOWN_SIGNATURE: Final = str(Signature.default())
_BALANCE_FIELDS: Final = ("preBalances", "postBalances", "preTokenBalances", "postTokenBalances")
_METHOD_NOT_FOUND: Final = -32601
_ATTEMPTS: Final = 4  # tries per probe call on HTTP 429 / 5xx
_RETRY_S: Final = 0.1  # first wait between them, doubling
SIM_BALANCES: Final = "simulateTransaction.balances"
SIM_ACCOUNTS: Final = "simulateTransaction.accounts"


@dataclasses.dataclass(frozen=True)
class Capability:
    name: str
    available: bool
    required: bool
    detail: str
    fallback: str = ""  # the capability that does this one's job when it is missing


@dataclasses.dataclass(frozen=True)
class SwapProbe:
    """What to ask the swap API: ``api`` v1 or v2, and a pair to quote (or none)."""

    api: str
    api_key: str = ""
    input_mint: str = ""
    output_mint: str = ""
    amount: int = 0  # base units of the input mint


def missing(capabilities: list[Capability]) -> list[Capability]:
    """Required capabilities that are unavailable and have no available fallback."""
    available = {c.name for c in capabilities if c.available}
    return [c for c in capabilities
            if c.required and not c.available and c.fallback not in available]


def probe(rpc_url: str, swap_url: str, owner: str, swap: SwapProbe,
          timeout_s: float) -> list[Capability]:
    """:func:`probe_rpc` for synchronous callers (the bootstrap checks)."""
    return asyncio.run(probe_rpc(rpc_url, swap_url, owner, swap, timeout_s=timeout_s))


async def probe_rpc(rpc_url: str, swap_url: str, owner: str, swap: SwapProbe, *,
                    timeout_s: float) -> list[Capability]:
    """Every capability, probed concurrently; each request waits at most ``timeout_s``."""
    async with httpx2.AsyncClient(timeout=timeout_s) as http:
        rpc = _Rpc(http, rpc_url)
        probes: list[Awaitable[list[Capability]]] = [
            _listed(_get_transaction(rpc)), _listed(_signature_history(rpc)),
            _listed(_block_height(rpc)), _listed(_epoch_info(rpc)),
            _listed(_blockhash_valid(rpc)), _simulation(rpc, owner),
            _listed(_multiple_accounts(rpc, owner)), _owner_reads(rpc, owner),
            _listed(_swap_api(http, swap_url, swap))]
        found = await asyncio.gather(*probes)
    capabilities = [capability for group in found for capability in group]
    balances = next(c for c in capabilities if c.name == SIM_BALANCES)
    # The accounts option and getMultipleAccounts are needed exactly when the simulation
    # has no balance fields.
    return [dataclasses.replace(c, required=not balances.available)
            if c.name in (SIM_ACCOUNTS, "getMultipleAccounts") else c for c in capabilities]


async def _listed(probe: Awaitable[Capability]) -> list[Capability]:
    return [await probe]


class _Rpc:
    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url

    async def call(self, method: str, params: list[Any]) -> tuple[Any, str]:
        """(result, "") or (None, why it failed); a JSON null result is a result. A rate
        limit or a server error is asked again (a busy provider is not a missing method)."""
        for attempt in range(_ATTEMPTS):
            try:
                response = await self._http.post(self._url, json={
                    "jsonrpc": "2.0", "id": 1, "method": method, "params": params})
            except httpx2.HTTPError as exc:
                return None, f"{type(exc).__name__}: {exc or 'no answer'}"
            if response.status_code != 429 and response.status_code < 500:
                break
            if attempt + 1 < _ATTEMPTS:
                await asyncio.sleep(_RETRY_S * 2**attempt)
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return None, "the answer is not JSON"
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            if code == _METHOD_NOT_FOUND:
                return None, f"method not found ({code}): the provider does not serve it"
            return None, f"JSON-RPC error {code}: {error.get('message')}"
        if not isinstance(body, dict) or "result" not in body:
            return None, "the answer has no result"
        return body["result"], ""


def _value(result: Any) -> Any:
    return result.get("value") if isinstance(result, dict) else None


async def _get_transaction(rpc: _Rpc) -> Capability:
    result, why = await rpc.call("getTransaction", [_UNKNOWN_SIGNATURE, {
        "encoding": "base64", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}])
    ok = not why and result is None
    return Capability("getTransaction", ok, True, why or (
        "an unknown signature answers null" if ok else f"an unknown signature answers {result}"))


async def _signature_history(rpc: _Rpc) -> Capability:
    result, why = await rpc.call("getSignatureStatuses", [[_UNKNOWN_SIGNATURE],
                                                          {"searchTransactionHistory": True}])
    ok = not why and _value(result) == [None]
    return Capability("getSignatureStatuses.history", ok, True, why or (
        "with searchTransactionHistory, an unknown signature answers [null]" if ok
        else f"answered {result}"))


async def _block_height(rpc: _Rpc) -> Capability:
    result, why = await rpc.call("getBlockHeight", [{"commitment": "confirmed"}])
    ok = not why and isinstance(result, int)
    return Capability("getBlockHeight", ok, True, why or f"height {result}")


async def _epoch_info(rpc: _Rpc) -> Capability:
    result, why = await rpc.call("getEpochInfo", [{"commitment": "confirmed"}])
    ok = not why and isinstance(result, dict) and isinstance(result.get("blockHeight"), int)
    detail = why or (f"slot {result['absoluteSlot']}, height {result['blockHeight']}" if ok
                     else f"answered {result}")
    return Capability("getEpochInfo", ok, False, detail, fallback="getBlockHeight")


async def _blockhash_valid(rpc: _Rpc) -> Capability:
    result, why = await rpc.call("isBlockhashValid", [str(Hash.default()),
                                                      {"commitment": "confirmed"}])
    ok = not why and isinstance(_value(result), bool)
    return Capability("isBlockhashValid", ok, False, why or (
        "an unknown blockhash answers false" if ok else f"answered {result}"),
        fallback="getBlockHeight")


async def _multiple_accounts(rpc: _Rpc, owner: str) -> Capability:
    result, why = await rpc.call("getMultipleAccounts", [[owner], {
        "encoding": "base64", "commitment": "confirmed"}])
    value = _value(result)
    ok = not why and isinstance(value, list) and len(value) == 1
    return Capability("getMultipleAccounts", ok, False, why or (
        "reads the owner's account" if ok else f"answered {result}"))


async def _owner_reads(rpc: _Rpc, owner: str) -> list[Capability]:
    """What the ledger's chain watch reads: the owner's SOL and its accounts."""
    (balance, why_balance), (info, why_info) = await asyncio.gather(
        rpc.call("getBalance", [owner, {"commitment": "confirmed"}]),
        rpc.call("getAccountInfo", [owner, {"encoding": "base64", "commitment": "confirmed"}]))
    balance_ok = not why_balance and isinstance(_value(balance), int)
    info_ok = not why_info and isinstance(info, dict) and "value" in info
    return [Capability("getBalance", balance_ok, True, why_balance or (
                f"the owner holds {_value(balance)} lamports" if balance_ok
                else f"answered {balance}")),
            Capability("getAccountInfo", info_ok, True, why_info or (
                "reads the owner's account" if info_ok else f"answered {info}"))]


async def _simulation(rpc: _Rpc, owner: str) -> list[Capability]:
    """One simulated self-transfer of 0 lamports, asking for the owner's post-state too."""
    payer = Pubkey.from_string(owner)
    message = MessageV0.try_compile(payer, [transfer(TransferParams(
        from_pubkey=payer, to_pubkey=payer, lamports=0))], [], Hash.default())
    tx = VersionedTransaction.populate(message, [Signature.default()])
    result, why = await rpc.call("simulateTransaction", [
        base64.b64encode(bytes(tx)).decode(), {
            "encoding": "base64", "sigVerify": False, "replaceRecentBlockhash": True,
            "commitment": "confirmed", "accounts": {"encoding": "base64",
                                                    "addresses": [owner]}}])
    value = _value(result)
    if why or not isinstance(value, dict):
        why = why or f"answered {result}"
        return [Capability(SIM_BALANCES, False, True, why, fallback=SIM_ACCOUNTS),
                Capability(SIM_ACCOUNTS, False, False, why)]
    failed = f" (the simulation failed: {value['err']}; does the owner hold SOL?)" \
        if value.get("err") is not None else ""
    absent = [name for name in _BALANCE_FIELDS if value.get(name) is None]
    accounts = value.get("accounts")
    accounts_ok = isinstance(accounts, list) and len(accounts) == 1
    return [Capability(SIM_BALANCES, not absent, True, (
                "pre/post SOL and token balances returned" if not absent
                else f"no {', '.join(absent)} (older node or provider)") + failed,
                fallback=SIM_ACCOUNTS),
            Capability(SIM_ACCOUNTS, accounts_ok, False, (
                "post-state of requested accounts returned" if accounts_ok
                else f"the accounts option is ignored: {json.dumps(accounts)}") + failed)]


async def _swap_api(http: httpx2.AsyncClient, base_url: str, swap: SwapProbe) -> Capability:
    """A quote for ``swap``'s pair (or, with no pair, the base URL) must get an answer."""
    headers = {"x-api-key": swap.api_key} if swap.api_key else {}
    base = base_url.rstrip("/")
    if swap.input_mint and swap.output_mint:
        path = "/swap/v2/order" if swap.api == "v2" else "/swap/v1/quote"
        params = {"inputMint": swap.input_mint, "outputMint": swap.output_mint,
                  "amount": str(swap.amount)}
        if swap.api == "v1":
            params["slippageBps"] = "50"
    else:
        path, params = "/", {}
    try:
        response = await http.get(base + path, params=params, headers=headers)
    except httpx2.HTTPError as exc:
        return Capability("swap_api", False, True, f"GET {path}: {type(exc).__name__}: "
                                                   f"{exc or 'no answer'}")
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    said = body.get("errorCode") or body.get("error") or ""
    said = f" {said}: {body.get('errorMessage', '')}".rstrip(": ") if said else ""
    if status in (401, 403):
        return Capability("swap_api", False, True, f"GET {path}: HTTP {status}{said} "
                                                   "(is the API key set and valid?)")
    if status >= 500 or (path != "/" and status == 404):
        return Capability("swap_api", False, True, f"GET {path}: HTTP {status}{said}")
    if status == 200 and "outAmount" in body:
        return Capability("swap_api", True, True, f"GET {path}: quoted {body['inAmount']} "
                                                  f"-> {body['outAmount']}")
    return Capability("swap_api", True, True, f"GET {path}: reachable, HTTP {status}{said}")
