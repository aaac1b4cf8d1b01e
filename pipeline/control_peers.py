"""Who sent a control request, what it asked for, and how many refusals it may still cost.

A peer is the CURVE client key when there is one (the ZAP ``User-Id``); on ipc the
connecting uid (libzmq reports the socket's peer credentials as ``host:uid:gid:pid`` in
``Peer-Address``; the pid is dropped, or every fresh Lazy Pirate socket from a new process
would be a new peer); on tcp the address; else the connection's routing id.

Refusals that cost something (the ledger audits refused kill-switch requests) are paid
from a token bucket per peer; a peer whose bucket is empty is answered ``rate_limited``
without its request reaching a handler or the database, until the bucket refills.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import zmq

# The command of a request whose envelope cannot be used (too large, not JSON, wrong
# version): read from the raw bytes so that a refused kill-switch request is still known.
_CMD: Final = re.compile(rb'"cmd"\s*:\s*"([A-Za-z0-9_.\-]{1,64})"')
OVERFLOW_PEER: Final = "overflow"  # peers beyond max_peers share one bucket


@dataclass(frozen=True)
class Refusal:
    """One refused request, as the process's refusal hook sees it."""

    peer: str
    command: str | None  # without the process prefix; None when it cannot be read
    code: str
    message: str
    # envelope: never reached a handler; handler: the handler refused (and recorded it);
    # crash: the handler failed (internal_error); limit: answered rate_limited.
    stage: str


def intended_command(payload: bytes) -> str | None:
    """The ``cmd`` a request names, read from its raw bytes as best as possible."""
    match = _CMD.search(payload)
    return match.group(1).decode() if match else None


def _property(frame: zmq.Frame, name: str) -> str:
    try:
        value = frame.get(name)
    except zmq.ZMQError:  # not set for this connection (e.g. no ZAP handler)
        return ""
    return value if isinstance(value, str) else ""


def peer_of(routing_id: bytes, frame: zmq.Frame, *, ipc: bool) -> str:
    """A stable name for who sent ``frame`` (see the module doc)."""
    user = _property(frame, "User-Id")
    if user:
        return f"key:{user}"
    address = _property(frame, "Peer-Address")
    if ipc:
        parts = address.split(":")
        if len(parts) == 4 and parts[1].isdigit():
            return f"uid:{parts[1]}"
    elif address:
        return f"ip:{address}"
    return f"conn:{routing_id.hex()}"


class PeerBuckets:
    """A token bucket per peer: ``burst`` refusals at once, refilled at ``per_s``."""

    def __init__(self, burst: int, per_s: float, *, max_peers: int = 4096,
                 clock_s: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or not per_s > 0:
            raise ValueError(f"need burst >= 1 and per_s > 0, got {burst} and {per_s}")
        self._burst = float(burst)
        self._per_s = per_s
        self._max_peers = max_peers
        self._clock_s = clock_s
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, as of)

    def _tokens(self, peer: str, now_s: float) -> float:
        tokens, as_of = self._buckets.get(peer, (self._burst, now_s))
        return min(self._burst, tokens + (now_s - as_of) * self._per_s)

    def _key(self, peer: str) -> str:
        if peer in self._buckets or len(self._buckets) < self._max_peers:
            return peer
        now_s = self._clock_s()  # make room: a full bucket is the same as no entry
        for name in [p for p in self._buckets if self._tokens(p, now_s) >= self._burst]:
            del self._buckets[name]
        return peer if len(self._buckets) < self._max_peers else OVERFLOW_PEER

    def limited(self, peer: str) -> bool:
        """True while ``peer`` has no refusal left to spend."""
        return self._tokens(self._key(peer), self._clock_s()) < 1.0

    def spend(self, peer: str) -> None:
        """A refusal that cost something was charged to ``peer``."""
        key = self._key(peer)
        now_s = self._clock_s()
        self._buckets[key] = (self._tokens(key, now_s) - 1.0, now_s)
