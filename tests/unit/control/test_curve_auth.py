"""CurveZMQ with the ZAP allow-list: real sockets, real handshakes, no stand-ins."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq
from testkit import eventually

from pipeline.control import ControlServer, request
from pipeline.control_config import ControlConfig
from pipeline.endpoints import Endpoints, generate_keypair, load_secret_certificate
from pipeline.errors import OperationalError


@dataclass
class Keys:
    server_public: Path
    server_secret: Path
    client_secret: Path
    stranger_secret: Path
    allowed_dir: Path


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    server_public, server_secret = generate_keypair(tmp_path / "server", "server")
    client_public, client_secret = generate_keypair(tmp_path / "clients", "operator")
    _, stranger_secret = generate_keypair(tmp_path / "strangers", "stranger")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "operator.key").write_bytes(client_public.read_bytes())
    return Keys(server_public, server_secret, client_secret, stranger_secret, allowed)


def _config(keys: Keys) -> ControlConfig:
    return ControlConfig(curve=True, server_secret_key=str(keys.server_secret),
                         server_public_key=str(keys.server_public),
                         client_secret_key=str(keys.client_secret),
                         authorized_keys_dir=str(keys.allowed_dir))


@pytest.fixture
def served(keys: Keys, tmp_path: Path) -> Iterator[tuple[Endpoints, list[int]]]:
    """A ControlServer on ipc with CURVE, answered by a thread until the test ends."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    endpoints = Endpoints(_config(keys), tmp_path)
    denied: list[int] = []
    guard = endpoints.start_guard(context, logging.getLogger("test.control"),
                                  on_denied=lambda: denied.append(1))
    assert guard is not None
    server = ControlServer(context, "", "ledger", {"ping": lambda _a: {"pong": "ledger"}},
                           bind=lambda sock: endpoints.bind(sock, "ledger", "ctl"))
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            if server.socket.poll(20):
                server.handle_pending()

    thread = threading.Thread(target=answer)
    thread.start()
    yield endpoints, denied
    stop.set()
    thread.join()
    server.close()
    guard.stop()
    context.destroy(linger=0)


def test_listed_client_gets_answers(served: tuple[Endpoints, list[int]]) -> None:
    endpoints, denied = served
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        reply = request(context, endpoints.address("ledger", "ctl"), "ping", timeout_s=2,
                        retries=0, setup=endpoints.secure_client)
    finally:
        context.destroy(linger=0)
    assert reply["result"] == {"pong": "ledger"}
    assert denied == []


def test_unlisted_client_gets_nothing_and_is_logged(
        served: tuple[Endpoints, list[int]], keys: Keys,
        caplog: pytest.LogCaptureFixture) -> None:
    endpoints, denied = served
    stranger = Endpoints(endpoints.config, endpoints.run_dir, client_key=keys.stranger_secret)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    caplog.set_level(logging.WARNING, logger="test.control")
    try:
        with pytest.raises(TimeoutError):
            request(context, stranger.address("ledger", "ctl"), "ping", timeout_s=0.3,
                    retries=0, setup=stranger.secure_client)
    finally:
        context.destroy(linger=0)
    eventually(lambda: bool(denied), message="the refusal was counted")
    assert any(getattr(r, "event", "") == "control.unauthorised" for r in caplog.records)


def test_a_plain_client_without_curve_gets_nothing(served: tuple[Endpoints, list[int]]) -> None:
    endpoints, _ = served
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with pytest.raises(TimeoutError):
            request(context, endpoints.address("ledger", "ctl"), "ping", timeout_s=0.3,
                    retries=0)
    finally:
        context.destroy(linger=0)


def test_secret_keys_readable_by_others_are_refused(keys: Keys) -> None:
    keys.client_secret.chmod(0o644)
    with pytest.raises(OperationalError, match="chmod 600"):
        load_secret_certificate(keys.client_secret)


def test_ipc_sockets_are_private(tmp_path: Path) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    endpoints = Endpoints(ControlConfig(), tmp_path)
    server = ControlServer(context, "", "ingest", {},
                           bind=lambda sock: endpoints.bind(sock, "ingest", "ctl"))
    try:
        assert (tmp_path / "ingest.ctl").stat().st_mode & 0o777 == 0o600
    finally:
        server.close()
        context.destroy(linger=0)
