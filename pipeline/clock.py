"""The clock check that gates trading: no order leaves while the wall clock is suspect.

Fill timestamps, staleness checks on source times and blockhash lifetimes all trust the
host clock, which every process of the pipeline shares. The ledger asks the configured NTP
servers (SNTP, see :mod:`pipeline.sntp`) at start and every ``check_interval_s`` after, on a
background thread; the first valid answer of each round decides. A drift of
``max_drift_s`` or more, or no answer from any server, fails the check:

- ``disable_trading``: the ledger's trading state carries ``CLOCK_UNSAFE``
  (:mod:`pipeline.trading_state`) from start until a check passes, and again whenever a
  later check fails, so the strategy withholds its intents and the executor rejects any
  with TRADING_DISABLED; ``pipeline_clock_bootstrap_failed`` is 1 and the log says why;
- ``exit``: the ledger refuses to start (the first check runs before start-up finishes);
  a later failure disables trading as above, since a running ledger cannot un-start;
- ``warn``: logged and exported only.

``auto`` (the default) gates devnet and mainnet and only warns in paper and localnet, so
the embedded offline default still trades with no network. An empty ``servers`` list
turns the measurement off (``pipeline_clock_check_enabled`` 0, no offset series): a check
that can never pass, so in a gated environment trading stays halted.

``pipeline_clock_offset_seconds`` is the one drift figure the pipeline exports, with the one
threshold ``max_drift_s``.
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
    """``[clock]``: NTP servers (``host`` or ``host:port``), how often to ask, and what a
    failed check does. No servers: no measurement (see the module docstring)."""

    servers: tuple[str, ...] = ("pool.ntp.org",)
    max_drift_s: float = 1.0
    timeout_s: float = 1.0  # per server
    on_failure: str = "auto"  # auto | disable_trading | exit | warn
    check_interval_s: float = 300.0  # between measurements after the one at start

    def __post_init__(self) -> None:
        require(all(self.servers), "clock.servers", self.servers, "empty server name")
        require(math.isfinite(self.max_drift_s) and self.max_drift_s > 0, "clock.max_drift_s",
                self.max_drift_s, "must be a finite number > 0")
        require(math.isfinite(self.timeout_s) and self.timeout_s > 0, "clock.timeout_s",
                self.timeout_s, "must be a finite number > 0")
        require(self.on_failure in ACTIONS, "clock.on_failure", self.on_failure,
                f"must be one of {ACTIONS}")
        require(math.isfinite(self.check_interval_s) and self.check_interval_s > 0,
                "clock.check_interval_s", self.check_interval_s,
                "must be a finite number of seconds > 0")

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
    if not failures:
        return None, "no NTP server configured (clock.servers is empty)"
    return None, "no NTP server answered: " + "; ".join(failures)


class ClockGate:
    """Measures at start and every ``check_interval_s``; answers :meth:`allows_trading`
    for the ledger's trading state from the latest measurement."""

    def __init__(self, config: ClockConfig, env: str, log: logging.Logger,
                 registry: CollectorRegistry, query: Query = sntp.query) -> None:
        self._config = config
        self._action = config.action(env)
        self._log = log
        self._query = query
        enabled = bool(config.servers)
        Gauge("pipeline_clock_check_enabled",
              "1 if the ledger measures the clock against NTP (clock.servers set)",
              registry=registry).set(1 if enabled else 0)
        self._failed = Gauge("pipeline_clock_bootstrap_failed",
                             "1 if the latest NTP clock check failed, 0 if it passed "
                             "(-1 before the first answer)", registry=registry)
        # Absent, not 0, when nothing is measured: a zero offset would read as a good clock.
        self._offset = Gauge("pipeline_clock_offset_seconds",
                             "NTP time minus this host's, at the latest clock check",
                             registry=registry if enabled else None)
        self._offset.set(math.nan)  # NaN, not 0, until a server answers (0 reads as good)
        self._failed.set(-1)
        self._stop = threading.Event()
        self.done = threading.Event()  # the first check has an answer
        self.ok = False
        self.checks = 0
        if self._action == "exit":
            self._check()
            if not self.ok:
                raise OperationalError("clock check failed and clock.on_failure = 'exit'")
        threading.Thread(target=self._run, name="clock-check", daemon=True).start()

    def allows_trading(self) -> bool:
        """False until a gating check has passed or after one failed; always True when
        only warning."""
        return self._action == "warn" or (self.done.is_set() and self.ok)

    def close(self) -> None:
        """Stop measuring (the thread ends after its current query, if any)."""
        self._stop.set()

    def _run(self) -> None:
        if self.checks:  # the exit action measured in the constructor
            self._stop.wait(self._config.check_interval_s)
        while not self._stop.is_set():
            self._check()
            self._stop.wait(self._config.check_interval_s)

    def _check(self) -> None:
        offset, where = measure(self._config, self._query)
        was_ok, first = self.ok, not self.done.is_set()
        self.ok = offset is not None and abs(offset) < self._config.max_drift_s
        self._offset.set(math.nan if offset is None else offset)  # no answer: unknown
        self._failed.set(0 if self.ok else 1)
        self.checks += 1
        self.done.set()
        if self.ok:
            if first or not was_ok:
                self._log.info("clock check passed: drift %+.3f s vs %s", offset, where,
                               extra={"event": "clock.ok", "drift_s": offset})
            return
        why = (where if offset is None else
               f"drift {offset:+.3f} s vs {where} is at least clock.max_drift_s = "
               f"{self._config.max_drift_s:g} s")
        action = "disable_trading" if self._action == "exit" and not first else self._action
        consequence = {"disable_trading": "trading is disabled until a check passes",
                       "exit": "the ledger will not start",
                       "warn": "trading continues (warn only in this environment)"}
        level = logging.WARNING if action == "warn" else logging.ERROR
        self._log.log(level, "clock check failed: %s; %s", why, consequence[action],
                      extra={"event": "clock.failed", "action": action})
