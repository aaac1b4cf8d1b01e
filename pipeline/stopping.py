"""Stop upstream first: how long each process drains, and how it waits for its writer.

All four processes may be told to stop at the same moment: supervisord signals a whole
group together (``stop pipeline:*``, ``restart pipeline:*``, its own SIGTERM) and the
launcher's death reaches every child at once. A reader of a lossless ring that stopped as
soon as its ring looked empty would then leave behind whatever its writer still publishes
while draining: the executor's last reports (cancels, a Solana venue's confirmations) would
sit unbooked in /dev/shm, which dies with a container. So the ledger keeps reading until the
executor has closed the reports ring or exited, and the executor does the same for the
strategy's intents ring.

Every bound is a share of ``run.stop_timeout_s`` (the launcher's wait per process), set in
one table so the chain stays ordered: the ledger waits past the executor's whole drain,
then commits the rest. supervisord's ``stopwaitsecs`` must exceed each process's share
(see deploy/supervisor/supervisord.conf).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipeline.ring import RingReader, pid_alive


@dataclass(frozen=True)
class StopBudget:
    """Shares of ``run.stop_timeout_s``: the whole drain, and the wait for the writer in it."""

    drain_share: float
    upstream_share: float = 0.0  # 0: the process reads no lossless ring it must wait for


STOP_BUDGETS: Final[dict[str, StopBudget]] = {
    "ingest": StopBudget(0.8),
    "strategy": StopBudget(0.8),  # ticks are lossy: it finishes what ingest published
    # The strategy's drain is one last batch of ticks: milliseconds, unless it is stuck.
    "executor": StopBudget(0.8, upstream_share=0.4),
    # Past the executor's whole drain (0.8) with a margin for signals sent a little apart.
    "ledger": StopBudget(0.9, upstream_share=0.85),
}


_SAID: Final = {"closed": "closed it", "exited": "has exited", "absent": "never opened it"}


def drain_timeout_s(process: str, stop_timeout_s: float) -> float:
    """How long ``process`` may drain before it gives up with work in flight."""
    return STOP_BUDGETS[process].drain_share * stop_timeout_s


def upstream_wait_s(process: str, stop_timeout_s: float) -> float:
    """How long ``process`` waits, while draining, for the writer of the ring it reads."""
    return STOP_BUDGETS[process].upstream_share * stop_timeout_s


def process_gone(pid: int) -> bool:
    """True if ``pid`` has exited: no such process, or a zombie its parent has not reaped yet
    (``kill(pid, 0)`` still succeeds on a zombie, which has published its last record)."""
    if pid == os.getpid() or not pid_alive(pid):  # ours: the old writer's pid, reused
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not pid_alive(pid)  # gone between the two looks, or no /proc: trust kill()
    return stat[stat.rfind(")") + 2:].startswith(("Z", "X"))


class UpstreamWait:
    """While a reader drains: has the writer of its ring finished publishing?

    Finished means closed in order (its segment marked closed), exited (every record it
    wrote is in the ring, since it wrote them before it died), or never there (pid 0). A
    writer still running after ``timeout_s`` (e.g. only this reader was stopped) is left
    to run: its records stay in the lossless ring for the next reader, and that is logged.
    Call :meth:`finished` *before* looking at what is left to read: a writer seen finished
    has published everything it ever will.
    """

    def __init__(self, writer: str, timeout_s: float, log: logging.Logger) -> None:
        self._writer = writer
        self._timeout_s = timeout_s
        self._log = log
        self._started: float | None = None
        self.outcome: str | None = None  # closed | absent | exited | timeout, once finished

    def finished(self, reader: RingReader) -> bool:
        """True once the writer of ``reader``'s ring closed it, exited or outlived the wait."""
        if self.outcome is not None:
            return True
        now = time.monotonic()
        if self._started is None:
            self._started = now
        pid = reader.writer_pid
        if reader.closed:
            outcome = "closed"
        elif pid == 0:
            outcome = "absent"  # no writer ever opened this ring
        elif process_gone(pid):
            outcome = "exited"
        elif now - self._started >= self._timeout_s:
            outcome = "timeout"
        else:
            return False
        self.outcome = outcome
        waited_s = round(now - self._started, 3)
        extra = {"event": "process.upstream_done", "writer": self._writer,
                 "ring": reader.spec.name, "outcome": outcome, "waited_s": waited_s}
        if outcome == "timeout":
            self._log.warning("%s still writes %s after %.1f s: stopping without it; what it "
                              "writes from now on waits in the ring for the next reader",
                              self._writer, reader.spec.name, waited_s, extra=extra)
        else:
            self._log.info("%s: %s %s, reading what is left", reader.spec.name, self._writer,
                           _SAID[outcome], extra=extra)
        return True
