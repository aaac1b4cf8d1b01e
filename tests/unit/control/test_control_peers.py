"""The per-peer refusal budget and reading the command of an unusable request."""

from __future__ import annotations

import pytest

from pipeline.control_peers import OVERFLOW_PEER, PeerBuckets, intended_command


def test_a_peer_spends_its_burst_then_one_refusal_per_refill() -> None:
    now = [100.0]
    buckets = PeerBuckets(3, 0.5, clock_s=lambda: now[0])
    for _ in range(3):
        assert not buckets.limited("a")
        buckets.spend("a")
    assert buckets.limited("a")
    assert not buckets.limited("b")  # per peer
    now[0] += 1.0  # half a token
    assert buckets.limited("a")
    now[0] += 1.0
    assert not buckets.limited("a")
    buckets.spend("a")
    assert buckets.limited("a")
    now[0] += 3600.0
    assert not buckets.limited("a")  # never more than the burst
    for _ in range(3):
        buckets.spend("a")
    assert buckets.limited("a")


def test_peers_beyond_the_table_share_one_bucket_and_full_buckets_are_forgotten() -> None:
    now = [0.0]
    buckets = PeerBuckets(1, 1.0, max_peers=2, clock_s=lambda: now[0])
    buckets.spend("a")
    buckets.spend("b")
    buckets.spend("c")  # no room: charged to the shared overflow bucket
    assert buckets.limited("d")
    assert buckets.limited(OVERFLOW_PEER)
    now[0] += 10.0  # every bucket is full again: the table makes room
    assert not buckets.limited("d")
    buckets.spend("d")
    assert buckets.limited("d")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        PeerBuckets(0, 1.0)
    with pytest.raises(ValueError, match="per_s"):
        PeerBuckets(1, 0.0)


@pytest.mark.parametrize(("payload", "command"), [
    (b'{"v": 2, "cmd": "trade.enable"}', "trade.enable"),
    (b'{"v": 1, "cmd" :  "ledger.trade.disable", "args": {', "ledger.trade.disable"),
    (b'{"args": {"pad": "' + b"x" * 100_000 + b'"}, "cmd": "trade.enable"}', "trade.enable"),
    (b"\xff\xfe", None),
    (b'{"cmd": 5}', None),
])
def test_the_intended_command_is_read_from_raw_bytes(payload: bytes,
                                                     command: str | None) -> None:
    assert intended_command(payload) == command
