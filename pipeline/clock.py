"""Start-up clock check that gates trading: no order leaves while the wall clock is suspect.

Fill timestamps, staleness checks on source times and blockhash lifetimes all trust the
host clock, which every process of the pipeline shares. At ledger start the configured NTP
servers are asked (SNTP, see :mod:`pipeline.sntp`) on a background thread; the first valid
answer decides. A drift of ``max_drift_s`` or more, or no answer from any server, fails
the check:

- ``disable_trading``: the ledger's trading state carries ``CLOCK_UNSAFE`` for this run
  (from start until the check passes; :mod:`pipeline.trading_state`), so the strategy
  withholds its intents and the executor rejects any with TRADING_DISABLED;
  ``pipeline_clock_bootstrap_failed`` is 1 and the log says why;
- ``exit``: the ledger refuses to start (the check then runs before start-up finishes);
- ``warn``: logged and exported only.

``auto`` (the default) gates devnet and mainnet and only warns in paper and localnet, so
the embedded offline default still trades with no network.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Gauge

from pipeline import sntp
from pipeline.configtools import require
from pipeline.errors import OperationalError

ACTIONS: Final = ("auto", "disable_trading", "exit", "warn")
GATED_ENVIRONMENTS: Final = ("devnet", "mainnet")


@dataclass(frozen=True)
class ClockConfig:
    """``[clock]``: NTP servers (``host`` or ``host:port``) and what a failed check does."""

    servers: tuple[str, ...] = ("pool.ntp.org",)
    max_drift_s: float = 1.0
    timeout_s: float = 1.0  # per server
    on_failure: str = "auto"  # auto | disable_trading | exit | warn

    def __post_init__(self) -> None:
        require(len(self.servers) >= 1, "clock.servers", self.servers, "need at least one")
        require(math.isfinite(self.max_drift_s) and self.max_drift_s > 0, "clock.max_drift_s",
                self.max_drift_s, "must be a finite number > 0")
        require(math.isfinite(self.timeout_s) and self.timeout_s > 0, "clock.timeout_s",
                self.timeout_s, "must be a finite number > 0")
        require(self.on_failure in ACTIONS, "clock.on_failure", self.on_failure,
                f"must be one of {ACTIONS}")

    def action(self, env: str) -> str:
        """The effective action for ``env`` (``auto`` resolved)."""
        if self.on_failure != "auto":
            return self.on_failure
        return "disable_trading" if env in GATED_ENVIRONMENTS else "warn"


Query = Callable[[str, int, float], sntp.SntpResult]


def measure(config: ClockConfig, query: Query = sntp.query) -> tuple[float | None, str]:
    """(offset in seconds from the first server that answers, or None; a description)."""
    failures = []
    for server in config.servers:
        host, _, port = server.rpartition(":") if ":" in server else (server, "", "123")
        try:
            result = query(host, int(port), config.timeout_s)
        except (sntp.SntpError, ValueError) as exc:
            failures.append(str(exc))
            continue
        return result.offset_s, f"{server} (stratum {result.stratum})"
    return None, "no NTP server answered: " + "; ".join(failures)


class ClockGate:
    """Runs the check once and answers :meth:`allows_trading` for the ledger's state."""

    def __init__(self, config: ClockConfig, env: str, log: logging.Logger,
                 registry: CollectorRegistry, query: Query = sntp.query) -> None:
        self._config = config
        self._action = config.action(env)
        self._log = log
        self._query = query
        self._failed = Gauge("pipeline_clock_bootstrap_failed",
                             "1 if the start-up NTP clock check failed (-1 while running)",
                             registry=registry)
        self._offset = Gauge("pipeline_clock_drift_seconds",
                             "NTP time minus this host's at start-up", registry=registry)
        self._failed.set(-1)
        self.done = threading.Event()
        self.ok = False
        if self._action == "exit":
            self._check()
            if not self.ok:
                raise OperationalError("clock check failed and clock.on_failure = 'exit'")
        else:
            threading.Thread(target=self._check, name="clock-check", daemon=True).start()

    def allows_trading(self) -> bool:
        """False until a gating check has passed; always True when only warning."""
        return self._action == "warn" or (self.done.is_set() and self.ok)

    def _check(self) -> None:
        offset, where = measure(self._config, self._query)
        self.ok = offset is not None and abs(offset) < self._config.max_drift_s
        if offset is not None:
            self._offset.set(offset)
        self._failed.set(0 if self.ok else 1)
        self.done.set()
        if self.ok:
            self._log.info("clock check passed: drift %+.3f s vs %s", offset, where,
                           extra={"event": "clock.ok", "drift_s": offset})
            return
        why = (where if offset is None else
               f"drift {offset:+.3f} s vs {where} is at least clock.max_drift_s = "
               f"{self._config.max_drift_s:g} s")
        consequence = {"disable_trading": "trading stays disabled for this run",
                       "exit": "the ledger will not start",
                       "warn": "trading continues (warn only in this environment)"}
        level = logging.WARNING if self._action == "warn" else logging.ERROR
        self._log.log(level, "clock check failed: %s; %s", why, consequence[self._action],
                      extra={"event": "clock.failed", "action": self._action})
