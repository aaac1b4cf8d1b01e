"""The clock check (at start and periodic) against an SNTP responder on 127.0.0.1 started by
the test."""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from testkit import eventually

from pipeline.clock import ClockConfig, ClockGate, measure
from pipeline.errors import ConfigError, OperationalError
from pipeline.sntp import to_ntp

LOG = logging.getLogger("test.clock")


class NtpResponder:
    """Answers SNTP requests with its clock set ``skew_s`` away from ours."""

    def __init__(self, skew_s: float) -> None:
        self.skew_s = skew_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            now = to_ntp(time.time() + self.skew_s)
            reply = bytearray(48)
            reply[0] = (4 << 3) | 4  # version 4, server mode, leap 0
            reply[1] = 2  # stratum
            originate = struct.unpack_from("!II", data, 40)
            struct.pack_into("!IIIIII", reply, 24, *originate, *now, *now)
            self.sock.sendto(bytes(reply), peer)


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A bound UDP port that never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


def test_measures_drift_from_the_first_server_that_answers(silent_port: str) -> None:
    server = NtpResponder(skew_s=0.0)
    config = ClockConfig(servers=(silent_port, server.address), timeout_s=0.2)
    offset, where = measure(config)
    assert offset is not None
    assert abs(offset) < 0.5
    assert server.address in where


def test_drift_of_a_second_keeps_trading_disabled_in_gated_environments(
        caplog: pytest.LogCaptureFixture) -> None:
    server = NtpResponder(skew_s=5.0)
    registry = CollectorRegistry()
    with caplog.at_level(logging.ERROR, logger="test.clock"):
        gate = ClockGate(ClockConfig(servers=(server.address,)), "mainnet", LOG, registry)
        assert not gate.allows_trading()  # not before the answer either
        eventually(gate.done.is_set)
    assert not gate.allows_trading()
    assert gauge(registry, "pipeline_clock_bootstrap_failed") == 1.0
    assert gauge(registry, "pipeline_clock_offset_seconds") == pytest.approx(5.0, abs=0.5)
    assert gauge(registry, "pipeline_clock_check_enabled") == 1.0
    assert gauge(registry, "pipeline_clock_drift_seconds") is None  # the one gauge is offset
    assert "trading is disabled until a check passes" in caplog.text
    gate.close()


def test_a_good_clock_enables_trading() -> None:
    server = NtpResponder(skew_s=0.2)
    registry = CollectorRegistry()
    gate = ClockGate(ClockConfig(servers=(server.address,)), "devnet", LOG, registry)
    eventually(gate.done.is_set)
    assert gate.allows_trading()
    assert gauge(registry, "pipeline_clock_bootstrap_failed") == 0.0


def test_no_answer_only_warns_in_paper_and_can_exit(silent_port: str) -> None:
    config = ClockConfig(servers=(silent_port,), timeout_s=0.2)
    registry = CollectorRegistry()
    gate = ClockGate(config, "paper", LOG, registry)
    assert gate.allows_trading()  # warn only: the offline default still trades
    eventually(gate.done.is_set)
    assert gate.allows_trading()
    assert gauge(registry, "pipeline_clock_bootstrap_failed") == 1.0
    offset = gauge(registry, "pipeline_clock_offset_seconds")
    assert offset is not None
    assert math.isnan(offset), "unknown, never a good-looking 0"
    exiting = ClockConfig(servers=(silent_port,), timeout_s=0.2, on_failure="exit")
    with pytest.raises(OperationalError, match="clock"):
        ClockGate(exiting, "paper", LOG, CollectorRegistry())


def test_auto_resolves_by_environment() -> None:
    assert [ClockConfig().action(env) for env in ("paper", "localnet", "devnet", "mainnet")] == [
        "warn", "warn", "disable_trading", "disable_trading"]


def test_the_clock_is_measured_again_and_the_latest_check_decides() -> None:
    server = NtpResponder(skew_s=0.0)
    registry = CollectorRegistry()
    config = ClockConfig(servers=(server.address,), check_interval_s=0.05, timeout_s=0.5)
    gate = ClockGate(config, "mainnet", LOG, registry)
    try:
        eventually(gate.allows_trading, timeout_s=5, message="first check passed")
        server.skew_s = 3.0  # the host clock drifts away
        eventually(lambda: not gate.allows_trading(), timeout_s=5, message="drift noticed")
        assert gauge(registry, "pipeline_clock_offset_seconds") == pytest.approx(3.0, abs=0.5)
        assert gauge(registry, "pipeline_clock_bootstrap_failed") == 1.0
        server.skew_s = 0.0
        eventually(gate.allows_trading, timeout_s=5, message="trading back after a pass")
        assert gate.checks >= 3
    finally:
        gate.close()


def test_no_servers_turns_the_measurement_off_visibly() -> None:
    registry = CollectorRegistry()
    gate = ClockGate(ClockConfig(servers=()), "paper", LOG, registry)
    eventually(gate.done.is_set)
    gate.close()
    assert gauge(registry, "pipeline_clock_check_enabled") == 0.0
    assert gauge(registry, "pipeline_clock_offset_seconds") is None  # absent, not 0
    assert gate.allows_trading()  # paper only warns
    gated = ClockGate(ClockConfig(servers=()), "mainnet", LOG, CollectorRegistry())
    eventually(gated.done.is_set)
    gated.close()
    assert not gated.allows_trading()  # a check that can never pass never opens trading


def test_check_interval_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"clock\.check_interval_s"):
        ClockConfig(check_interval_s=0.0)
