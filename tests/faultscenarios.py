"""The misbehaviours real Solana RPCs and swap APIs show, as faults for ``faultproxy``, and the
named scenarios the execution-fault suite runs (issue 12, item 5).

Each fault is deterministic (every n-th call, a window from the first sighting, a lag behind
the chain) so a failing scenario fails the same way on the next run.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from faultproxy import ChainView, Exchange, Fault, Hold, Reply, Reset, Verdict, rpc_error
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from pipeline.solana.keys import load_keypair

ORDER = "/swap/v2/order"
EXECUTE = "/swap/v2/execute"


class _Every:
    """True on every ``n``-th call (thread-safe)."""

    def __init__(self, n: int) -> None:
        self._counter = itertools.count(1)
        self._n = n
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return next(self._counter)

    def hit(self) -> bool:
        return self() % self._n == 0


class MethodError(Fault):
    """The RPC refuses a method with a JSON-RPC error (a provider restricting history)."""

    def __init__(self, method: str, code: int = -32601, message: str = "Method not found"
                 ) -> None:
        super().__init__()
        self._method, self._code, self._message = method, code, message

    def intercept(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != self._method:
            return None
        self.count()
        return Reply(200, rpc_error(exchange.request_id, self._code, self._message))


class NullTransaction(Fault):
    """``getTransaction`` answers null for a confirmed signature: for ``for_s`` seconds after
    the proxy first saw it served (a lagging history node), or forever (``for_s`` None)."""

    def __init__(self, for_s: float | None) -> None:
        super().__init__()
        self._for_s = for_s
        self._first_seen: dict[str, float] = {}

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != "getTransaction" or not isinstance(exchange.answer, dict) \
                or exchange.answer.get("result") is None:
            return None
        first = self._first_seen.setdefault(str(exchange.params[0]), time.monotonic())
        if self._for_s is None or time.monotonic() - first < self._for_s:
            exchange.answer["result"] = None
            self.count()
        return None


class StatusLag(Fault):
    """``getSignatureStatuses`` answered from a view of the chain ``lag_s`` old (a node behind
    the one that served the block height): statuses newer than that view are null and the
    context slot is the view's. Block height and blockhash validity stay current."""

    def __init__(self, view: ChainView, lag_s: float) -> None:
        super().__init__()
        self._view, self._lag_s = view, lag_s

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != "getSignatureStatuses" or not isinstance(exchange.answer, dict) \
                or not isinstance(exchange.answer.get("result"), dict):
            return None
        lagged = self._view.height_at(time.monotonic() - self._lag_s)
        result = exchange.answer["result"]
        result["context"]["slot"] = lagged
        hidden = [i for i, s in enumerate(result["value"]) if s and s["slot"] > lagged]
        for index in hidden:
            result["value"][index] = None
        if hidden:
            self.count()
        return None


class RateLimited(Fault):
    """HTTP 429 with Retry-After on every ``every``-th JSON-RPC call, whatever the method."""

    def __init__(self, every: int = 3, retry_after_s: int = 1) -> None:
        super().__init__()
        self._every, self._retry_after_s = _Every(every), retry_after_s

    def intercept(self, exchange: Exchange) -> Verdict | None:
        if exchange.method.startswith("/") or not self._every.hit():
            return None
        self.count()
        return Reply(429, {"jsonrpc": "2.0", "error": {"code": 429, "message":
                                                     "Too many requests for a specific RPC "
                                                     "call"}, "id": exchange.request_id},
                     (("Retry-After", str(self._retry_after_s)),))


class LostAnswer(Fault):
    """The call reaches the upstream (a transaction lands) but its answer never arrives: the
    connection is reset, or the answer is held past the client's timeout."""

    def __init__(self, method: str, *, hold_s: float | None = None) -> None:
        super().__init__()
        self._method, self._hold_s = method, hold_s

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != self._method:
            return None
        self.count()
        return Reset() if self._hold_s is None else Hold(self._hold_s)


class SimulationWithoutBalances(Fault):
    """``simulateTransaction`` without pre/post (token) balances, as before Agave 2025; with
    ``accounts`` False it also ignores the ``accounts`` option (answers accounts: null)."""

    def __init__(self, accounts: bool) -> None:
        super().__init__()
        self._accounts = accounts

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != "simulateTransaction" or not isinstance(exchange.answer, dict) \
                or not isinstance(exchange.answer.get("result"), dict):
            return None
        value = exchange.answer["result"]["value"]
        for field in ("preBalances", "postBalances", "preTokenBalances", "postTokenBalances"):
            value[field] = None
        if not self._accounts:
            value["accounts"] = None
        self.count()
        return None


class SlowOrder(Fault):
    """``/order`` answered only when the chain is ``blocks_left`` (cycled) blocks from the
    answer's ``lastValidBlockHeight``: the blockhash is nearly or fully expired when signed."""

    def __init__(self, view: ChainView, blocks_left: Sequence[int] = (30, 0),
                 cap_s: float = 11.0) -> None:
        super().__init__()
        self._view, self._cap_s = view, cap_s
        self._blocks_left = itertools.cycle(blocks_left)
        self._lock = threading.Lock()

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != ORDER or not isinstance(exchange.answer, dict) \
                or "lastValidBlockHeight" not in exchange.answer:
            return None
        with self._lock:
            answer_at = int(exchange.answer["lastValidBlockHeight"]) - next(self._blocks_left)
        self.count()
        return Hold(self._cap_s, lambda: self._view.height() >= answer_at)


class StaleBlockhash(Fault):
    """``/order`` returns a transaction built on an old blockhash, valid for only
    ``blocks_left`` (cycled) more blocks, maker-signed as a lagging venue node would build
    it, with the matching ``lastValidBlockHeight``: nearly or fully expired when signed."""

    def __init__(self, view: ChainView, blocks_left: Sequence[int] = (0, 2, 5, 10)) -> None:
        super().__init__()
        self._view = view
        self._blocks_left = itertools.cycle(blocks_left)
        self._lock = threading.Lock()
        self._maker: Keypair | None = None

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != ORDER or not isinstance(exchange.answer, dict) \
                or "transaction" not in exchange.answer:
            return None
        with self._lock:
            old = self._view.blockhash_valid_until(self._view.height()
                                                   + next(self._blocks_left))
        maker = self._maker_key()
        if old is None or maker is None:
            return None
        tx = VersionedTransaction.from_bytes(base64.b64decode(exchange.answer["transaction"]))
        m = tx.message
        assert isinstance(m, MessageV0), "the maker builds v0 messages"
        message = MessageV0(m.header, list(m.account_keys), Hash.from_string(old.blockhash),
                            list(m.instructions), list(m.address_table_lookups))
        signature = maker.sign_message(to_bytes_versioned(message))
        signers = list(message.account_keys)[: message.header.num_required_signatures]
        stale = VersionedTransaction.populate(message, [
            signature if key == maker.pubkey() else Signature.default() for key in signers])
        exchange.answer["transaction"] = base64.b64encode(bytes(stale)).decode()
        exchange.answer["lastValidBlockHeight"] = old.last_valid_height
        self.count()
        return None

    def _maker_key(self) -> Keypair | None:
        if self._maker is None:
            manifest = self._view.upstream.manifest()
            if manifest is not None:
                self._maker = load_keypair(Path(manifest["trader_keypair"]).with_name(
                    "localnet-maker.json"))
        return self._maker


class ShortLastValid(Fault):
    """``/order`` under-reports ``lastValidBlockHeight`` by ``blocks``: a venue trusting it
    thinks a transaction expired while it can still land."""

    def __init__(self, blocks: int = 100) -> None:
        super().__init__()
        self._blocks = blocks

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != ORDER or not isinstance(exchange.answer, dict) \
                or "lastValidBlockHeight" not in exchange.answer:
            return None
        exchange.answer["lastValidBlockHeight"] = int(
            exchange.answer["lastValidBlockHeight"]) - self._blocks
        self.count()
        return None


class ExecuteSaysFailed(Fault):
    """``/execute`` lands the transaction, then answers Jupiter's -1005 failure anyway."""

    def rewrite(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != EXECUTE:
            return None
        exchange.status = 200
        exchange.answer = {"status": "Failed", "code": -1005,
                           "error": "Transaction expired (injected: it landed)"}
        self.count()
        return None


class Intermittent(Fault):
    """Every ``every``-th call of ``methods`` fails, alternating JSON-RPC -32603 and HTTP 500."""

    def __init__(self, methods: Sequence[str], every: int = 2) -> None:
        super().__init__()
        self._methods, self._every = set(methods), _Every(every)
        self._flip = itertools.cycle((True, False))
        self._lock = threading.Lock()

    def intercept(self, exchange: Exchange) -> Verdict | None:
        if exchange.method not in self._methods or not self._every.hit():
            return None
        self.count()
        with self._lock:
            as_json = next(self._flip)
        if as_json:
            return Reply(200, rpc_error(exchange.request_id, -32603, "Internal error"))
        return Reply(500, {"error": "upstream node unavailable"})


class SwapBursts(Fault):
    """``/order`` in cycles of ``cycle`` calls: ``bad`` HTTP 500s, then ``bad`` 429s, then
    the rest pass (a provider having a bad minute, then throttling the retries)."""

    def __init__(self, cycle: int = 10, bad: int = 2) -> None:
        super().__init__()
        self._calls, self._cycle, self._bad = _Every(cycle), cycle, bad

    def intercept(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != ORDER:
            return None
        position = (self._calls() - 1) % self._cycle
        if position >= 2 * self._bad:
            return None
        self.count()
        if position < self._bad:
            return Reply(500, {"errorCode": "INTERNAL", "errorMessage": "upstream failure"})
        return Reply(429, {"errorCode": "RATE_LIMITED", "errorMessage": "Too many requests"},
                     (("Retry-After", "1"),))


class SwapRefusal(Fault):
    """Every ``every``-th ``/order`` is refused with HTTP 400 and Jupiter's error shape."""

    def __init__(self, every: int = 3) -> None:
        super().__init__()
        self._every = _Every(every)

    def intercept(self, exchange: Exchange) -> Verdict | None:
        if exchange.method != ORDER or not self._every.hit():
            return None
        self.count()
        return Reply(400, {"errorCode": "ROUTE_PLAN_DOES_NOT_CONSUME_ALL_THE_AMOUNT",
                           "errorMessage": "no route for this amount (injected)"})


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named set of faults, the executor settings it needs, and what the run must show."""

    name: str
    faults: Callable[[ChainView], list[Fault]]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    trades: bool = True  # False: nothing may land (the executor must refuse to sign)
    min_landed: int = 3  # fewer landed transactions: the run did not really trade
    refusal_words: tuple[str, ...] = ()  # the refusal's log line must name these


EXECUTE_LANDING = {"PIPELINE__EXECUTOR__SOLANA__LANDING": '"execute"'}
V1 = {"PIPELINE__EXECUTOR__SOLANA__API": '"v1"'}
# /order is held up to ~8 s: the client must wait longer than that for it.
PATIENT = {"PIPELINE__EXECUTOR__SOLANA__RPC_TIMEOUT_S": "12.0"}
HEIGHT_CALLS = ("getSignatureStatuses", "getBlockHeight", "getEpochInfo")


def _no_tx(_view: ChainView) -> list[Fault]:
    return [MethodError("getTransaction")]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clean", lambda _v: []),
    Scenario("gettx-method-not-found", _no_tx),
    Scenario("gettx-null-3s", lambda _v: [NullTransaction(3.0)]),
    Scenario("gettx-null-forever", lambda _v: [NullTransaction(None)]),
    Scenario("status-lag-3s", lambda v: [StatusLag(v, 3.0)]),
    Scenario("rpc-429-every-3rd", lambda _v: [RateLimited(3)]),
    Scenario("send-answer-reset", lambda _v: [LostAnswer("sendTransaction")]),
    Scenario("send-answer-timeout", lambda _v: [LostAnswer("sendTransaction", hold_s=6.5)]),
    Scenario("sim-no-balances", lambda _v: [SimulationWithoutBalances(accounts=True)]),
    Scenario("sim-no-balances-no-accounts",
             lambda _v: [SimulationWithoutBalances(accounts=False)], trades=False,
             refusal_words=("simulat", "accounts")),
    # Each order waits ~7 s for its /order and half of them expire: few land in a run, and
    # what is judged is that none lands late or twice (a-d), not the volume.
    Scenario("order-held-to-expiry", lambda v: [SlowOrder(v)], env=PATIENT, min_landed=0),
    Scenario("order-stale-blockhash", lambda v: [StaleBlockhash(v)]),
    Scenario("order-short-last-valid", lambda _v: [ShortLastValid(100)]),
    Scenario("order-short-last-valid+status-lag-3s",
             lambda v: [ShortLastValid(100), StatusLag(v, 3.0)]),
    Scenario("execute-says-failed", lambda _v: [ExecuteSaysFailed()], env=EXECUTE_LANDING),
    Scenario("execute-answer-reset", lambda _v: [LostAnswer(EXECUTE)], env=EXECUTE_LANDING),
    Scenario("status-height-errors", lambda _v: [Intermittent(HEIGHT_CALLS)]),
    Scenario("swap-500-429-bursts", lambda _v: [SwapBursts()]),
    Scenario("swap-400-refusals", lambda _v: [SwapRefusal(3)]),
    Scenario("status-lag-3s+gettx-method-not-found",
             lambda v: [StatusLag(v, 3.0), MethodError("getTransaction")]),
    Scenario("v1+gettx-method-not-found", _no_tx, env=V1),
)
WORST: tuple[str, ...] = ("gettx-method-not-found", "gettx-null-forever", "send-answer-reset")


def scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


__all__ = ["SCENARIOS", "WORST", "Scenario", "scenario"]
