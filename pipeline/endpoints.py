"""Where each process's control and event sockets live, and how they are secured.

Servers (every process) call :meth:`Endpoints.bind`; clients (the admin tool, the launcher,
the executor listening to the ledger) call :meth:`Endpoints.connect`. With ``control.curve``
both sides use CurveZMQ: servers with the server secret key, clients with their own key pair
and the server's public key; a ZAP handler (:class:`ZapGuard`) admits only client keys found
in ``control.authorized_keys_dir`` and logs every refusal. CURVE alone would admit anyone who
knows the server's public key; the allow-list is what makes it authentication.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pipeline.control_config import ControlConfig
from pipeline.errors import OperationalError

KINDS = ("ctl", "events")


def load_secret_certificate(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a zmq certificate file that only its owner can read."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise OperationalError(f"{path}: secret key file is accessible by group/others "
                                   f"(mode {stat.S_IMODE(mode):o}); chmod 600 it")
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise OperationalError(f"{path}: cannot read secret key: {exc}") from exc
    if secret is None:
        raise OperationalError(f"{path}: has no secret key (is it the public .key file?)")
    return public, secret


def load_public_certificate(path: Path) -> bytes:
    try:
        public, _secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise OperationalError(f"{path}: cannot read public key: {exc}") from exc
    return public


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.key`` (public, share it) and ``<name>.key_secret`` (mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


class ZapGuard:
    """The allow-list behind CURVE: admits listed client keys, logs and counts the rest."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], keys_dir: Path,
                 log: logging.Logger, on_denied: Callable[[], None] | None = None) -> None:
        if not keys_dir.is_dir():
            raise OperationalError(f"control.authorized_keys_dir {keys_dir}: not a directory")
        self.allowed = set(zmq.auth.load_certificates(str(keys_dir)))
        self._log = log
        self._on_denied = on_denied or (lambda: None)
        self._auth = ThreadAuthenticator(context, log=logging.getLogger("pipeline.zap"))
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, _domain: str, client_key: bytes) -> bool:
        """Called by the authenticator thread for every CURVE handshake."""
        if client_key in self.allowed:
            return True
        self._on_denied()
        self._log.warning("refused a control client whose key is not on the allow-list",
                          extra={"event": "control.unauthorised",
                                 "client_key": client_key.decode(errors="replace")})
        return False

    def stop(self) -> None:
        self._auth.stop()


class Endpoints:
    """Addresses and socket security for one pipeline's control plane."""

    def __init__(self, config: ControlConfig, run_dir: Path, *,
                 client_key: Path | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self._client_key = client_key or (Path(config.client_secret_key)
                                          if config.client_secret_key else None)

    def address(self, process: str, kind: str) -> str:
        """The address a client connects to."""
        if self.config.transport == "ipc":
            return f"ipc://{self.run_dir / process}.{kind}"
        return f"tcp://{self.config.host}:{self._port(process, kind)}"

    def is_local(self) -> bool:
        """True when only the operator's own user can reach the sockets (ipc, mode 0600)."""
        return self.config.transport == "ipc"

    def ipc_path(self, process: str, kind: str) -> Path | None:
        return self.run_dir / f"{process}.{kind}" if self.config.transport == "ipc" else None

    def _port(self, process: str, kind: str) -> int:
        table = self.config.ports if kind == "ctl" else self.config.event_ports
        return table[process]

    def bind(self, sock: zmq.Socket[bytes], process: str, kind: str) -> str:
        """Secure (CURVE server) and bind ``sock``; returns the bound endpoint."""
        if self.config.curve:
            public, secret = load_secret_certificate(Path(self.config.server_secret_key))
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_server = True
            sock.zap_domain = b"*"
        if self.config.transport == "ipc":
            path = self.run_dir / f"{process}.{kind}"
            sock.bind(f"ipc://{path}")
            os.chmod(path, 0o600)
            return f"ipc://{path}"
        address = self.address(process, kind)
        try:
            sock.bind(address)
        except zmq.ZMQError as exc:
            raise OperationalError(f"cannot bind the {kind} socket on {address}: {exc}") from exc
        return address

    def secure_client(self, sock: zmq.Socket[bytes]) -> None:
        """Give a client socket its CURVE keys (no-op without CURVE)."""
        if not self.config.curve:
            return
        if self._client_key is None:
            raise OperationalError("control.curve is on but no client key is configured "
                                   "(control.client_secret_key or --client-key)")
        public, secret = load_secret_certificate(self._client_key)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_serverkey = load_public_certificate(Path(self.config.server_public_key))

    def connect(self, sock: zmq.Socket[bytes], process: str, kind: str) -> None:
        self.secure_client(sock)
        sock.connect(self.address(process, kind))

    def start_guard(self, context: zmq.Context[zmq.Socket[bytes]], log: logging.Logger,
                    on_denied: Callable[[], None] | None = None) -> ZapGuard | None:
        """Start the ZAP allow-list on ``context`` when CURVE is configured."""
        if not self.config.curve:
            return None
        return ZapGuard(context, Path(self.config.authorized_keys_dir), log, on_denied)
