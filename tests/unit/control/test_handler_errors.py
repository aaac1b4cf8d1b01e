"""A handler's bug is not the caller's bad arguments: real ROUTER socket, real requests."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import zmq
from testkit import eventually

from pipeline.control import BadArgsError, ControlServer
from pipeline.errors import BadInputError


def _type_bug(_args: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"n": len(None)}  # type: ignore[arg-type]


def _key_bug(args: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"n": args["missing"]}


def _validated(args: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(args.get("n"), int):
        raise BadArgsError("n must be an integer")
    return {"n": args["n"]}


def _parsed(_args: Mapping[str, Any]) -> Mapping[str, Any]:
    raise BadInputError("not a valid symbol")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[zmq.Context[zmq.Socket[bytes]], str, list[str],
                                             ControlServer]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    address = f"ipc://{tmp_path}/test.ctl"
    errors: list[str] = []
    control = ControlServer(context, address, "test",
                            {"type_bug": _type_bug, "key_bug": _key_bug,
                             "validated": _validated, "parsed": _parsed,
                             "ping": lambda _a: {"pong": True}},
                            on_handler_error=errors.append)
    yield context, address, errors, control
    control.close()
    context.destroy(linger=0)


def _ask(server: tuple[zmq.Context[zmq.Socket[bytes]], str, list[str], ControlServer],
         cmd: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    context, address, _errors, control = server
    client = context.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(address)
    try:
        client.send_multipart([b"", _body(cmd, args)])
        eventually(lambda: control.handle_pending() > 0, timeout_s=5)
        assert client.poll(5000)
        reply: dict[str, Any] = json.loads(client.recv_multipart()[-1])
        return reply
    finally:
        client.close(0)


def _body(cmd: str, args: Mapping[str, Any] | None) -> bytes:
    return json.dumps({"v": 1, "id": "r1", "cmd": cmd, "args": dict(args or {})}).encode()


@pytest.mark.parametrize("cmd", ["type_bug", "key_bug"])
def test_a_handler_bug_is_internal_error_logged_with_traceback_and_counted(
        server: Any, cmd: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="pipeline.control"):
        reply = _ask(server, cmd)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "internal_error"
    records = [r for r in caplog.records if getattr(r, "event", "") == "control.handler_error"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].command == cmd  # type: ignore[attr-defined]
    assert server[2] == [cmd]
    assert _ask(server, "ping")["result"] == {"pong": True}  # still serving


def test_only_argument_validation_errors_are_bad_args(server: Any) -> None:
    assert _ask(server, "validated", {"n": "x"})["error"]["code"] == "bad_args"
    assert _ask(server, "parsed")["error"]["code"] == "bad_args"
    assert _ask(server, "validated", {"n": 3})["result"] == {"n": 3}
    assert server[2] == []
