"""The [control] section: every bad value is refused with its key named."""

from __future__ import annotations

from typing import Any

import pytest
from solders.keypair import Keypair

from pipeline.config import load_config
from pipeline.errors import ConfigError

SIGNERS = [str(Keypair().pubkey()) for _ in range(3)]


@pytest.mark.parametrize(("control", "key"), [
    ({"transport": "udp"}, "control.transport"),
    ({"transport": "tcp", "host": "0.0.0.0"}, "control.curve"),
    ({"transport": "tcp", "host": "127.0.0.1"}, "control.curve"),
    ({"curve": True}, "control.server_secret_key"),
    ({"signers": ["not-a-key"]}, "control.signers[0]"),
    ({"signers": [SIGNERS[0], SIGNERS[0]]}, "control.signers"),
    ({"signers": SIGNERS, "enable_threshold": 4}, "control.enable_threshold"),
    ({"enable_threshold": 0}, "control.enable_threshold"),
    ({"max_message_ttl_s": 0}, "control.max_message_ttl_s"),
    ({"ports": {"ledger": 0}}, "control.ports.ledger"),
    ({"ports": {"ledger": 9121}}, "control.ports"),
    ({"request_timeout_s": -1}, "control.request_timeout_s"),
])
def test_bad_control_values_are_refused(control: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"control": control})
    assert caught.value.key == key


def test_tcp_without_curve_names_both_keys() -> None:
    with pytest.raises(ConfigError, match=r"control\.transport = \"tcp\" requires control\.curve"):
        load_config(environ={}, overrides={"control": {"transport": "tcp"}})


def test_tcp_with_curve_and_multisig_are_accepted() -> None:
    config = load_config(environ={}, overrides={"control": {
        "transport": "tcp", "host": "0.0.0.0", "curve": True, "server_secret_key": "s.key_secret",
        "server_public_key": "s.key", "client_secret_key": "c.key_secret",
        "authorized_keys_dir": "allowed", "signers": SIGNERS, "enable_threshold": 2}})
    assert config.control.transport == "tcp"
    assert config.control.signers == tuple(SIGNERS)
