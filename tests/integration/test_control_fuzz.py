"""Thousands of generated malformed control messages against a running strategy process.

Every message gets one well-formed error reply with a specific code; the process never
crashes, and its data path (ticks read from the ring) keeps up throughout: no tick lost.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from harness import pipeline_cmd, pipeline_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit import eventually

from pipeline.control import request

pytestmark = pytest.mark.slow
CODES = {"bad_json", "bad_request", "bad_version", "unknown_command", "bad_args", "too_large"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
bad_requests = st.one_of(
    st.binary(max_size=200),  # not JSON, or not UTF-8
    json_values.map(lambda v: json.dumps(v).encode()),  # JSON, not a request
    st.fixed_dictionaries({"v": json_values, "cmd": st.just("status")}).map(
        lambda d: json.dumps(d).encode()),  # wrong version
    st.fixed_dictionaries({"v": st.just(1), "id": json_values,
                           "cmd": json_values | st.text(max_size=30),
                           "args": json_values}).map(lambda d: json.dumps(d).encode()),
    st.integers(65 * 1024, 200 * 1024).map(lambda n: b" " * n),  # oversized
    st.integers(10, 2000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
)


@pytest.fixture(scope="module")
def strategy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """ingest + strategy started on their own (no executor: intents are dropped, fine)."""
    root = tmp_path_factory.mktemp("fuzz")
    shm = Path("/dev/shm") / f"pltest-fuzz-{root.name}"
    shm.mkdir(mode=0o700)
    env = pipeline_env(shm)
    data_dir = root / "var"
    procs = [subprocess.Popen(pipeline_cmd(name, "--data-dir", str(data_dir)), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name in ("strategy", "ingest")]
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    address = f"ipc://{data_dir}/run/strategy.ctl"

    def status() -> dict[str, Any]:
        result: dict[str, Any] = request(context, address, "status", timeout_s=2)["result"]
        return result

    eventually(lambda: (data_dir / "run" / "strategy.ctl").exists() and status()["ticks"] > 0,
               timeout_s=30, interval_s=0.1)
    yield data_dir, status
    context.destroy(linger=0)
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)
    for leftover in shm.iterdir():
        leftover.unlink()
    shm.rmdir()


@pytest.fixture(scope="module")
def dealer(strategy: tuple[Path, Any]) -> Iterator[zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 5000)  # raises, rather than hangs, if the process stops reading
    sock.connect(f"ipc://{strategy[0]}/run/strategy.ctl")
    yield sock
    context.destroy(linger=0)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(bad_requests, min_size=1, max_size=10))
def test_every_malformed_message_gets_a_specific_error(dealer: zmq.Socket[bytes],
                                                       batch: list[bytes]) -> None:
    for payload in batch:
        dealer.send_multipart([b"", payload])
    for _ in batch:
        assert dealer.poll(5000), "the process stopped answering"
        reply = json.loads(dealer.recv_multipart()[-1])
        if not reply["ok"]:
            assert reply["error"]["code"] in CODES, reply


def test_a_flood_neither_crashes_nor_starves_the_data_path(
        strategy: tuple[Path, Any], dealer: zmq.Socket[bytes]) -> None:
    _data_dir, status = strategy
    before = status()
    for i in range(5000):  # replies unread: the process must not block on them
        dealer.send_multipart([b"", b"{" if i % 2 else b'{"v": 1, "cmd": "nope"}'])
    huge = dealer.context.socket(zmq.DEALER)  # a frame over the hard cap: dropped, not read
    huge.setsockopt(zmq.LINGER, 0)
    huge.connect(f"ipc://{_data_dir}/run/strategy.ctl")
    huge.send_multipart([b"", b"x" * (2 * 1024 * 1024)])
    eventually(lambda: status()["ticks"] > before["ticks"] + 2000, timeout_s=30)
    after = status()
    assert after["state"] == "running"
    assert after["tick_overruns"] == 0, "ticks were lost while the control socket was flooded"
    assert not huge.poll(200)
    huge.close(0)
