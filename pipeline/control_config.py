"""The ``[control]`` config: where control sockets listen, who may connect, who may sign.

Two transports. ``ipc`` (default): socket files in the run directory with mode 0600, so only
the operator's user can connect; this user counts as the "local operator" who may disable
trading without a signature. ``tcp``: ``host:port`` per process, and only with CURVE (clients
on the allow-list): a TCP port, even on loopback, is open to every local user, who could
otherwise pause, reload or flood the audit log.

The kill switch: ``signers`` are base58 ed25519 public keys (Solana keypairs); enabling
trading needs ``enable_threshold`` (M) distinct valid signatures of the N signers, disabling
needs one (or the local operator). A signed message may expire at most
``max_message_ttl_s`` after it is verified, which bounds how long a nonce must be remembered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from pipeline.configtools import require

TRANSPORTS: Final = ("ipc", "tcp")
_PROCESSES: Final = ("ingest", "strategy", "executor", "ledger")


def _is_pubkey(text: str) -> bool:
    # Imported here: solders costs every process ~15 MB, and only configured signers need it.
    from solders.pubkey import Pubkey

    try:
        Pubkey.from_string(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ControlConfig:
    """Control-plane transport, CURVE authentication and kill-switch signers."""

    transport: str = "ipc"  # ipc | tcp
    host: str = "127.0.0.1"  # tcp only
    # tcp only: port of each process's control (ROUTER) and events (PUB) socket.
    ports: dict[str, int] = field(default_factory=lambda: {
        "ingest": 9111, "strategy": 9112, "executor": 9113, "ledger": 9114})
    event_ports: dict[str, int] = field(default_factory=lambda: {
        "ingest": 9121, "strategy": 9122, "executor": 9123, "ledger": 9124})
    curve: bool = False
    server_secret_key: str = ""  # processes: zmq certificate file with the server's secret
    server_public_key: str = ""  # clients: the server's public certificate
    client_secret_key: str = ""  # clients (admin, executor's event subscription)
    authorized_keys_dir: str = ""  # allow-list: one public certificate (*.key) per client
    signers: tuple[str, ...] = ()  # base58 ed25519 public keys allowed to sign
    enable_threshold: int = 2  # M of len(signers) needed to enable trading
    max_message_ttl_s: float = 900.0  # a signed message may not expire later than this
    request_timeout_s: float = 1.0  # admin client: wait per try
    request_retries: int = 1  # admin client: extra tries (Lazy Pirate)
    # Refused requests that cost an audit row (the ledger's kill switch) are paid from a
    # token bucket per peer: refusal_burst at once, refilled at refusal_per_s; beyond it a
    # peer is answered rate_limited. Each peer's refusals are audited one in full per code,
    # then counted: one row per peer per refusal_audit_interval_s.
    refusal_burst: int = 10
    refusal_per_s: float = 1.0
    refusal_audit_interval_s: float = 60.0

    def __post_init__(self) -> None:
        require(self.transport in TRANSPORTS, "control.transport", self.transport,
                f"one of {', '.join(TRANSPORTS)}")
        for table, ports in (("ports", self.ports), ("event_ports", self.event_ports)):
            for name, port in ports.items():
                require(name in _PROCESSES, f"control.{table}.{name}", port, "unknown process")
                require(0 < port < 65536, f"control.{table}.{name}", port, "not a port")
            for name in _PROCESSES:
                require(name in ports, f"control.{table}", ports, f"no port for {name}")
        every_port = [*self.ports.values(), *self.event_ports.values()]
        require(len(set(every_port)) == len(every_port), "control.ports", every_port,
                "control.ports and control.event_ports must all differ")
        require(self.transport != "tcp" or self.curve, "control.curve", self.curve,
                "control.transport = \"tcp\" requires control.curve = true: a TCP port is "
                "open to every local user (use transport \"ipc\" for a local pipeline)")
        if self.curve:
            for key in ("server_secret_key", "server_public_key", "client_secret_key",
                        "authorized_keys_dir"):
                require(bool(getattr(self, key)), f"control.{key}", getattr(self, key),
                        "required when control.curve = true (see `pipeline admin keygen`)")
        for i, signer in enumerate(self.signers):
            require(_is_pubkey(signer), f"control.signers[{i}]", signer,
                    "not a base58 ed25519 public key")
        require(len(set(self.signers)) == len(self.signers), "control.signers", self.signers,
                "signers must be distinct")
        require(self.enable_threshold >= 1, "control.enable_threshold", self.enable_threshold,
                "must be >= 1")
        if self.signers:
            require(self.enable_threshold <= len(self.signers), "control.enable_threshold",
                    self.enable_threshold, f"more than the {len(self.signers)} signers")
        require(math.isfinite(self.max_message_ttl_s) and 0 < self.max_message_ttl_s <= 86400,
                "control.max_message_ttl_s", self.max_message_ttl_s,
                "must be between 0 and 86400 seconds")
        require(0 < self.request_timeout_s <= 60, "control.request_timeout_s",
                self.request_timeout_s, "must be between 0 and 60 seconds")
        require(0 <= self.request_retries <= 10, "control.request_retries",
                self.request_retries, "must be between 0 and 10")
        require(1 <= self.refusal_burst <= 10_000, "control.refusal_burst",
                self.refusal_burst, "must be between 1 and 10000")
        require(math.isfinite(self.refusal_per_s) and 0 < self.refusal_per_s <= 1000,
                "control.refusal_per_s", self.refusal_per_s, "must be between 0 and 1000")
        require(math.isfinite(self.refusal_audit_interval_s)
                and 1 <= self.refusal_audit_interval_s <= 86400,
                "control.refusal_audit_interval_s", self.refusal_audit_interval_s,
                "must be between 1 and 86400 seconds")
