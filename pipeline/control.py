"""The ZeroMQ control plane: requests to one process (ROUTER) and events from it (PUB).

Every process binds two sockets in the run directory (``ipc://``, mode 0600, so only the
operator's user can connect):
- ``<process>.ctl``: ROUTER. A request is one JSON frame
  ``{"v": 1, "id": "...", "cmd": "status", "args": {}}``; the reply is
  ``{"v": 1, "id": "...", "ok": true, "result": {...}}`` or
  ``{"v": 1, "id": "...", "ok": false, "error": {"code": "...", "message": "..."}}``.
- ``<process>.events``: PUB. Multipart ``[topic, json]`` with dotted topics:
  ``heartbeat.<process>`` (state and counters, every ``run.heartbeat_interval_s``) and
  ``config.TRADE_ENABLED`` (the ledger, on every heartbeat and at once on a change).

The socket loop only decodes, dispatches to a handler table and encodes: handlers are plain
functions of the arguments returning a JSON-able dict.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq

from pipeline.control_peers import PeerBuckets, Refusal, intended_command, peer_of
from pipeline.errors import BadInputError

PROTOCOL_VERSION: Final = 1
MAX_REQUEST_BYTES: Final = 64 * 1024  # larger requests get a too_large reply
MAX_FRAME_BYTES: Final = 1024 * 1024  # larger frames drop the connection (memory bound)

Handler = Callable[[Mapping[str, Any]], Mapping[str, Any]]
Binder = Callable[[zmq.Socket[bytes]], object]  # secures and binds a server socket
SocketSetup = Callable[[zmq.Socket[bytes]], None]  # secures a client socket (CURVE keys)
log = logging.getLogger("pipeline.control")
_peer: ContextVar[str | None] = ContextVar("control_peer", default=None)
_LIMITED: Final = "too many refused requests from this peer; try again later"


class ControlError(Exception):
    """A request failed in a way the caller should see: a code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BadArgsError(BadInputError):
    """A handler's arguments failed validation: the caller gets ``bad_args``.

    Only this (and :class:`~pipeline.errors.BadInputError` from argument parsing) becomes
    ``bad_args``; a TypeError or KeyError inside a handler is a bug and is answered
    ``internal_error`` with its traceback in the log, never passed off as the caller's fault.
    """


def control_address(run_dir: Path, process: str) -> str:
    return f"ipc://{run_dir / process}.ctl"


def events_address(run_dir: Path, process: str) -> str:
    return f"ipc://{run_dir / process}.events"


def _bind_private(sock: zmq.Socket[bytes], address: str) -> None:
    sock.bind(address)
    if address.startswith("ipc://"):
        os.chmod(address[len("ipc://"):], 0o600)


def _error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": False,
            "error": {"code": code, "message": message}}


class ControlServer:
    """Answers control requests for one process from a handler table.

    Every refusal goes to ``on_refused`` with the peer and, as far as it can be read, the
    command it meant (see :mod:`pipeline.control_peers`); when the hook says the refusal
    cost something (an audit row), it is charged to the peer's token bucket in ``limiter``,
    and a peer with an empty bucket is answered ``rate_limited`` before any handler runs,
    except for the ``unlimited`` commands (the ledger's ``trade.disable``: a kill is never
    turned away).
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], address: str, process: str,
                 handlers: Mapping[str, Handler], *,
                 on_bad_request: Callable[[str], None] | None = None,
                 on_handler_error: Callable[[str], None] | None = None,
                 on_refused: Callable[[Refusal], bool] | None = None,
                 limiter: PeerBuckets | None = None, unlimited: Collection[str] = (),
                 bind: Binder | None = None) -> None:
        self.process = process
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.socket.setsockopt(zmq.RCVHWM, 1000)
        # A client that stops reading its replies must not fill our send queue: the
        # replies are dropped (ROUTER never blocks), the client times out and retries.
        self.socket.setsockopt(zmq.SNDHWM, 1000)
        if bind is None:
            _bind_private(self.socket, address)
        else:
            bind(self.socket)
        endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT)
        self._ipc = isinstance(endpoint, bytes) and endpoint.startswith(b"ipc://")
        self._handlers = dict(handlers)
        self._on_bad_request = on_bad_request or (lambda code: None)
        self._on_handler_error = on_handler_error or (lambda command: None)
        self._on_refused = on_refused or (lambda refusal: False)
        self._limiter = limiter
        self._unlimited = frozenset(unlimited)

    def handle_pending(self, budget: int = 100) -> int:
        """Answer up to ``budget`` queued requests without blocking; returns how many."""
        handled = 0
        while handled < budget:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            handled += 1
            if len(frames) < 2:
                continue  # no routing id: nothing to answer
            routing_id = frames[0].bytes
            reply = self.dispatch(frames[-1].bytes,
                                  peer_of(routing_id, frames[-1], ipc=self._ipc))
            self.socket.send_multipart([routing_id, b"", json.dumps(reply).encode()])
        return handled

    def dispatch(self, payload: bytes, peer: str = "in-process") -> dict[str, Any]:
        """Decode, validate, run the handler; every failure becomes a specific error reply."""
        limited = self._limiter is not None and self._limiter.limited(peer)
        envelope = self._envelope(payload)
        if isinstance(envelope, _Refused):
            guess = self._name(intended_command(payload))
            if limited:
                return self._refuse(envelope.req_id, Refusal(
                    peer, guess, "rate_limited", _LIMITED, "limit"))
            return self._refuse(envelope.req_id, Refusal(
                peer, guess, envelope.code, envelope.message, "envelope"))
        req_id, cmd, args = envelope
        name = cmd.removeprefix(f"{self.process}.")
        if limited and name not in self._unlimited:
            return self._refuse(req_id, Refusal(peer, name, "rate_limited", _LIMITED, "limit"))
        handler = self._handlers.get(name)
        if handler is None:
            return self._refuse(req_id, Refusal(
                peer, name, "unknown_command", f"{self.process} has no command {cmd!r}; "
                f"known: {', '.join(sorted(self._handlers))}", "envelope"))
        token = _peer.set(peer)
        try:
            result = dict(handler(args))
        except ControlError as exc:
            return self._refuse(req_id, Refusal(peer, name, exc.code, str(exc), "handler"))
        except BadInputError as exc:
            return self._refuse(req_id, Refusal(peer, name, "bad_args", f"{cmd}: {exc}",
                                                "handler"))
        except Exception:
            # A bug in the handler, not the caller's mistake: keep serving, but loudly.
            log.exception("control handler %s failed", name,
                          extra={"event": "control.handler_error", "command": name})
            self._on_handler_error(name)
            return self._refuse(req_id, Refusal(
                peer, name, "internal_error", f"{cmd} failed inside {self.process}; see its log",
                "crash"))
        finally:
            _peer.reset(token)
        return {"v": PROTOCOL_VERSION, "id": req_id, "ok": True, "result": result}

    def _envelope(self, payload: bytes) -> tuple[Any, str, dict[str, Any]] | _Refused:
        """(id, cmd, args) of a well-formed request, or why it is not one."""
        if len(payload) > MAX_REQUEST_BYTES:
            return _Refused(None, "too_large",
                            f"request of {len(payload)} bytes exceeds {MAX_REQUEST_BYTES}")
        try:
            request = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _Refused(None, "bad_json", "request is not valid JSON")
        except RecursionError:
            return _Refused(None, "bad_json", "request is nested too deeply")
        if not isinstance(request, dict):
            return _Refused(None, "bad_request", "request must be a JSON object")
        req_id = request.get("id")
        if request.get("v") != PROTOCOL_VERSION:
            return _Refused(req_id, "bad_version", f"protocol version must be {PROTOCOL_VERSION}")
        cmd = request.get("cmd")
        args = request.get("args", {})
        if not isinstance(cmd, str) or not isinstance(args, dict):
            return _Refused(req_id, "bad_request", "cmd must be a string and args an object")
        return req_id, cmd, args

    def _name(self, cmd: str | None) -> str | None:
        return None if cmd is None else cmd.removeprefix(f"{self.process}.")

    def _refuse(self, req_id: Any, refusal: Refusal) -> dict[str, Any]:
        self._on_bad_request(refusal.code)
        if self._on_refused(refusal) and self._limiter is not None:
            self._limiter.spend(refusal.peer)
        return _error(req_id, refusal.code, refusal.message)

    def close(self) -> None:
        self.socket.close(0)


@dataclass(frozen=True)
class _Refused:
    req_id: Any
    code: str
    message: str


def request_peer() -> str | None:
    """The peer whose request the current handler is answering (None outside a request)."""
    return _peer.get()


class EventPublisher:
    """Publishes heartbeats and events on ``<process>.events``."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], address: str,
                 bind: Binder | None = None) -> None:
        self.socket = context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 10000)
        if bind is None:
            _bind_private(self.socket, address)
        else:
            bind(self.socket)

    def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        body = dict(payload)
        body.setdefault("ts", time.time())
        self.socket.send_multipart([topic.encode(), json.dumps(body).encode()])

    def close(self) -> None:
        self.socket.close(0)


class EventSubscriber:
    """Subscribes to the events of several processes; a process may come and go."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], run_dir: Path,
                 processes: Iterable[str], topics: Iterable[str] = ("",),
                 connect: Callable[[zmq.Socket[bytes], str], None] | None = None) -> None:
        """``connect(socket, process)`` overrides the default ipc address in ``run_dir``."""
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        for process in processes:
            if connect is None:
                self.socket.connect(events_address(run_dir, process))
            else:
                connect(self.socket, process)

    def receive(self, timeout_ms: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """Drain queued events, waiting up to ``timeout_ms`` for the first one."""
        events: list[tuple[str, dict[str, Any]]] = []
        # socket.poll() builds a Poller per call (~10 us): on the hot path (timeout 0) a
        # non-blocking receive that finds nothing is several times cheaper.
        if timeout_ms > 0 and not self.socket.poll(timeout_ms):
            return events
        while True:
            try:
                topic, body = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return events
            except ValueError:
                continue  # wrong frame count: not ours
            try:
                events.append((topic.decode(), json.loads(body)))
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("undecodable event dropped", extra={"event": "control.bad_event"})

    def close(self) -> None:
        self.socket.close(0)


def request(context: zmq.Context[zmq.Socket[bytes]], address: str, cmd: str,
            args: Mapping[str, Any] | None = None, *, timeout_s: float = 1.0,
            retries: int = 2, setup: SocketSetup | None = None) -> dict[str, Any]:
    """Lazy Pirate request: a fresh socket per try, bounded wait, LINGER 0, bounded retries.

    Raises TimeoutError when the process does not answer, never hangs.
    """
    body = {"v": PROTOCOL_VERSION, "id": uuid.uuid4().hex, "cmd": cmd, "args": dict(args or {})}
    payload = json.dumps(body).encode()
    for _attempt in range(retries + 1):
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            if setup is not None:
                setup(sock)
            sock.connect(address)
            sock.send_multipart([b"", payload])
            if sock.poll(int(timeout_s * 1000)):
                reply = json.loads(sock.recv_multipart()[-1])
                if isinstance(reply, dict) and reply.get("id") == body["id"]:
                    return reply
        finally:
            sock.close(0)
    raise TimeoutError(f"no reply to {cmd} from {address} after {retries + 1} tries "
                       f"of {timeout_s:.1f} s")
