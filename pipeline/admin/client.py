"""One request to one process, Lazy Pirate style: bounded waits, never a hang.

A process that does not answer becomes :class:`ProcessDown` with a message that says what
was tried and for how long; the admin commands turn it into a clear line and a non-zero
exit. With ipc, a missing socket file answers at once ("not running") without waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zmq

from pipeline.control import request
from pipeline.endpoints import Endpoints


class ProcessDown(Exception):  # noqa: N818  (a state, not a failure of this program)
    """The process did not answer within the bounded time."""


class RequestRefused(Exception):  # noqa: N818
    """The process answered with an error reply."""

    def __init__(self, process: str, code: str, message: str) -> None:
        super().__init__(f"{process}: {code}: {message}")
        self.code = code


class AdminClient:
    """Sends control requests to the pipeline's processes."""

    def __init__(self, endpoints: Endpoints, *, timeout_s: float, retries: int) -> None:
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self.retries = retries
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    def call(self, process: str, cmd: str, args: Mapping[str, Any] | None = None) -> Any:
        """The ``result`` of ``process.cmd``; raises ProcessDown or RequestRefused."""
        path = self.endpoints.ipc_path(process, "ctl")
        if path is not None and not path.exists():
            raise ProcessDown(f"{process} is not running (no control socket at {path})")
        address = self.endpoints.address(process, "ctl")
        try:
            reply = request(self.context, address, f"{process}.{cmd}", args,
                            timeout_s=self.timeout_s, retries=self.retries,
                            setup=self.endpoints.secure_client)
        except TimeoutError:
            tries = self.retries + 1
            raise ProcessDown(
                f"{process} is not answering on {address} (no reply to {cmd} after {tries} "
                f"tr{'y' if tries == 1 else 'ies'} of {self.timeout_s:g} s): hung, down, or "
                "refusing our key") from None
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise RequestRefused(process, str(error.get("code")), str(error.get("message")))
        return reply.get("result")

    def close(self) -> None:
        self.context.destroy(linger=0)
