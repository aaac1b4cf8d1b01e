"""The ledger process: the only SQLite writer, committing execution reports in groups.

Reports are peeked from the lossless reports ring, committed together with the ring cursor
in one transaction, and only then consumed. A crash at any point therefore loses nothing
and writes nothing twice: on restart the cursor stored in the database wins.
Commits are paced to stay within ``ledger.commits_per_s`` and ``ledger.wal_bytes_per_s``.
With a chain venue the ledger also watches the trading account's balances on chain
(:mod:`pipeline.ledger.chain_watch`).

The ledger owns the trading state (:mod:`pipeline.trading_state`): ``TRADE_ENABLED``, a
stalled commit, a chain mismatch and its start-up clock check become the reasons trading
is halted, published in shared memory (:mod:`pipeline.killflag`) on every change and
heartbeat; the strategy and the executor read that word and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy.exc import OperationalError as SqlOperationalError

from pipeline.clock import ClockGate
from pipeline.control import ControlError, Handler
from pipeline.control_peers import Refusal
from pipeline.killflag import KillFlagWriter, flag_path
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.gauges import export_storage
from pipeline.ledger.governance import KillSwitch
from pipeline.ledger.health import CommitHealth
from pipeline.ledger.pacing import CommitPacer, estimate_wal_bytes
from pipeline.ledger.store import LedgerStore
from pipeline.metrics import LedgerMetrics
from pipeline.ring import RingReader
from pipeline.runtime import Runtime
from pipeline.service import Service
from pipeline.stopping import UpstreamWait, upstream_wait_s
from pipeline.trading_state import WRITTEN, Halt, describe, names

_CHAIN_POLL_S: Final = 0.05  # how often to step the chain check while it wants a reading


class LedgerService(Service):
    never_rate_limited = ("trade.disable",)  # a kill is never turned away

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        config = runtime.config
        self._config = config.ledger
        database = config.paths.database
        database.parent.mkdir(parents=True, exist_ok=True)
        self._engine = make_engine(
            database,
            synchronous=self._config.synchronous,
            busy_timeout_ms=self._config.busy_timeout_ms,
        )
        init_db(self._engine, config.env, self._config)
        native = None  # the asset network fees are paid in; None: not a chain venue
        if config.executor.venue == "solana":  # imported only when used: solana is heavy
            from pipeline.solana.account import native_asset
            native = native_asset(config)
        self._store = LedgerStore(self._engine, config.symbol_table(), self._config,
                                  native_asset=native)
        self._ring_name = runtime.ports.specs.reports.name
        self._reports = runtime.ports.reader("reports", resume=self._resume_reports)
        self._pacer = CommitPacer(self._config.commits_per_s, self._config.wal_bytes_per_s)
        self._metrics = LedgerMetrics(runtime.registry)
        export_storage(runtime.registry, database, config.paths.data_dir, self._config.backup)
        self._symbols = config.symbol_table()
        self._read_engine = make_engine(database, read_only=True)
        # Every process shares the host's clock; the ledger checks it once for all of them.
        self._clock = ClockGate(config.clock, config.env, runtime.log, runtime.registry)
        self._health = CommitHealth(
            threshold_s=self._config.stall_threshold_s,
            retry_initial_s=self._config.commit_retry_initial_s,
            retry_max_s=self._config.commit_retry_max_s,
            registry=runtime.registry, log=runtime.log, publish=runtime.events.publish)
        self._mismatch_halt = False  # until the multisig enables trading again
        self._published: tuple[int, bool] | None = None
        self._kill_flag = KillFlagWriter(
            flag_path(Path(config.rings.shm_dir), config.paths.ring_prefix),
            run_id=runtime.run_id, log=runtime.log)
        self._kill_switch = KillSwitch(
            self._engine, config.env, lambda: runtime.config.control,
            local_operator=runtime.endpoints.is_local(), on_change=self._trade_enabled_changed,
            on_durable=self._publish_state, log=runtime.log,
            read_engine=self._read_engine,
            retry_initial_s=self._config.commit_retry_initial_s,
            retry_max_s=self._config.commit_retry_max_s)
        self._trade_enabled = False
        if self._kill_flag.found_pending_disable:  # the previous ledger's disable, unwritten
            runtime.log.warning("a disable taken before this ledger started is not yet in "
                                "the database: it holds and is written now",
                                extra={"event": "ledger.kill_switch_recovered"})
            self._kill_switch.disable("ledger", "kill_switch.set", {
                "value": False, "reason": "recovered a disable that was not yet durable"})
        self._trade_enabled = self._effective_trade_enabled()
        self._publish_state()
        self._wait_s: float | None = None
        self._executor_done: UpstreamWait | None = None  # made when draining starts
        self.reports_committed = 0
        self.commits = 0
        self.duplicates = 0
        self._fills_total = int(self._store.summary()["fills"])  # counted once, then tracked
        self._backup = None
        if self._config.backup.enabled:  # imported only when used: start-up stays fast
            from pipeline.ledger.backup.service import start_agent
            self._backup = start_agent(config, runtime.registry, runtime.log)  # own thread
        self._chain = None
        if native is not None:
            from pipeline.ledger.chain_watch import ChainCheck, ChainWatch
            solana = config.executor.solana
            self._chain = ChainCheck(
                ChainWatch(config, native, runtime.log), self._store,
                reports=lambda: self._reports, tolerance=solana.balance_tolerance,
                interval_s=solana.balance_check_interval_s,
                recheck_s=solana.balance_recheck_s, on_mismatch=self._chain_mismatch,
                registry=runtime.registry, log=runtime.log)
        self._publish_trade_enabled()

    def _resume_reports(self, reader: RingReader) -> None:
        """Start reading at the cursor committed with the rows, if it is this ring instance."""
        self._instance = str(reader.instance_id)
        stored = self._store.cursor(self._ring_name, self._instance)
        if stored is not None and stored != reader.cursor:
            self._runtime.log.info(
                "resuming the reports ring at the committed cursor",
                extra={
                    "event": "ledger.resume",
                    "stored_cursor": stored,
                    "ring_cursor": reader.cursor,
                },
            )
            reader.seek(stored)

    def readers(self) -> list[RingReader]:
        return [self._reports]

    def step(self) -> bool:
        self._kill_switch.audit_refusals(time.monotonic())
        self._publish_state()  # a stall, its end or the clock check's answer: at once
        if self._kill_switch.retry_due(time.monotonic()):
            # One bounded wait per step (ledger.busy_timeout_ms): heartbeats still go out.
            self._kill_switch.retry()
            return True
        if self._chain is not None:
            self._chain.step(time.monotonic())
        if self._commit_when_due():
            return True
        if self._wait_s is None:
            self._reports.follow()
        return False

    def _commit_when_due(self) -> bool:
        """Commit the next group of reports unless the commit budget says wait."""
        self._wait_s = None
        now_s = time.monotonic()
        delay = max(self._pacer.delay_s(now_s), self._health.retry_at - now_s)
        if delay > 0:
            self._wait_s = delay
            return False
        batch = self._reports.peek(self._config.max_batch)
        if not len(batch):
            return False
        end = self._reports.cursor + len(batch)
        try:
            result = self._store.apply(batch, {self._ring_name: (self._instance, end)})
        except SqlOperationalError as exc:  # disk full, I/O error, read-only: rolled back
            self._metrics.commit_errors.inc()
            self._health.failed(time.monotonic(), exc, self._reports.available())
            return False
        self._health.succeeded(time.monotonic())
        self._reports.advance(len(batch))
        wal_bytes = estimate_wal_bytes(result.rows_written)
        self._pacer.record(time.monotonic(), wal_bytes)
        self._metrics.wal_written.inc(wal_bytes)
        self.reports_committed += len(batch)
        self.commits += 1
        self.duplicates += result.duplicates
        self._fills_total += result.fills
        if self._chain is not None:
            self._chain.committed(result)
        self._metrics.reports.inc(len(batch))
        self._metrics.duplicates.inc(result.duplicates)
        self._metrics.commit_seconds.observe(result.commit_seconds)
        self._metrics.rows_per_commit.observe(len(batch))
        return True

    def wake_readers(self) -> list[RingReader]:
        # While the commit budget makes us wait, new reports must not wake us: each would
        # end the wait at once and the loop would spin until the budget allows a commit.
        return [] if self._wait_s is not None else [self._reports]

    def idle_timeout_s(self) -> float | None:
        if self._chain is not None and self._chain.wants_reading:
            return min(self._wait_s or _CHAIN_POLL_S, _CHAIN_POLL_S)
        return self._wait_s

    def drain(self) -> bool:
        """Commit until the executor has finished writing reports and none is left unread.

        Everything may be stopped at once (supervisord signals a group together): the
        executor's own drain still writes reports, so the ledger stops last by waiting for
        it (:class:`~pipeline.stopping.UpstreamWait`), not by being signalled last."""
        if self._executor_done is None:
            self._executor_done = UpstreamWait(
                "executor", upstream_wait_s("ledger", self._runtime.config.run.stop_timeout_s),
                self._runtime.log)
        executor_done = self._executor_done.finished(self._reports)  # before reading the rest
        if self._kill_switch.retry_due(time.monotonic()):
            self._kill_switch.retry()  # tried, not waited for: the flag keeps it pending
        self._commit_when_due()
        self._health.check(time.monotonic())
        if self._reports.available() or not executor_done:
            return False
        return self._chain is None or self._chain.closing(time.monotonic())

    def _chain_mismatch(self, problem: str, differences: dict[str, tuple[float, float]]) -> None:
        """Chain and ledger disagree: trading stops until the multisig re-enables it."""
        self._runtime.log.error("chain balances differ from the ledger: trading disabled: %s",
                                problem, extra={"event": "chain.balance_mismatch"})
        self._mismatch_halt = True
        detail = {"reason": "chain balance mismatch",
                  "differences": {a: {"chain": c, "ledger": b}
                                  for a, (c, b) in differences.items()}}
        if self._trade_enabled:
            self._kill_switch.disable("ledger.chain_check", "config.set", detail)
        else:
            self._kill_switch.audit("ledger.chain_check", "chain.balance_mismatch", detail)

    def _publish_trade_enabled(self) -> None:
        self._runtime.events.publish("config.TRADE_ENABLED", {"value": self._trade_enabled})

    def _trade_enabled_changed(self, value: bool) -> None:
        """Decided by the kill switch: tell the executor now, not at the next heartbeat."""
        self._trade_enabled = value
        if value:  # the multisig looked at the mismatch and opened trading again
            self._mismatch_halt = False
        self._publish_state()  # the executor reads this word before every send
        self._publish_trade_enabled()
        self._metrics.trade_enabled.set(1.0 if value else 0.0)

    def _halt(self) -> int:
        """The reasons trading is halted now (0: trading on)."""
        halt = 0 if self._trade_enabled else Halt.TRADE_DISABLED
        if self._mismatch_halt:
            halt |= Halt.CHAIN_MISMATCH
        if not self._clock.allows_trading():
            halt |= Halt.CLOCK_UNSAFE
        if self._health.stalled:
            halt |= Halt.LEDGER_STALLED
        return int(halt)

    def _publish_state(self) -> None:
        """Write the trading state to shared memory if it changed (and log the change)."""
        state = (self._halt(), self._kill_switch.disable_pending)
        if state == self._published:
            return
        self._kill_flag.publish(state[0], pending=state[1])
        self._published = state
        self._runtime.log.log(
            logging.WARNING if state[0] else logging.INFO, "trading state: %s%s",
            describe(state[0]), " (disable not yet in the database)" if state[1] else "",
            extra={"event": "ledger.trading_state", "reasons": names(state[0]),
                   "pending": state[1]})

    def _effective_trade_enabled(self) -> bool:
        """The database's value, unless a disable holds that it does not show yet."""
        return self._store.trade_enabled() and not self._kill_switch.disable_pending

    def refused(self, refusal: Refusal) -> bool:
        return self._kill_switch.refused(refusal)

    def handlers(self) -> dict[str, Handler]:
        handlers = self._kill_switch.handlers()
        if self._chain is not None:
            handlers["balances.reopen"] = self._reopen_balances
        return handlers

    def _reopen_balances(self, args: Mapping[str, Any]) -> Mapping[str, Any]:
        """After a mismatch is explained: the next chain reading becomes the books' balances.

        Local operator only (the ipc socket only the operator's user can open); trading
        stays off until the multisig enables it, and the audit row names who and why."""
        if not self._runtime.endpoints.is_local():
            raise ControlError("forbidden", "balances.reopen is for the local operator only")
        operator, reason = args.get("operator"), args.get("reason")
        if not isinstance(operator, str) or not isinstance(reason, str) or not reason.strip():
            raise ControlError("bad_args", "operator and a non-empty reason are required")
        assert self._chain is not None
        self._chain.reopen(operator[:200], reason[:200])
        self._runtime.log.warning("balances re-open requested by %s: %s", operator, reason,
                                  extra={"event": "chain.reopen_requested"})
        return {"queued": True, "trade_enabled": self._trade_enabled}

    def on_heartbeat(self) -> None:
        """Raise or clear a commit stall and re-publish the trading state (stamped: readers
        take a state not written for a while as stale), TRADE_ENABLED and commit health
        (late subscribers, a replaced flag file)."""
        self._health.check(time.monotonic())
        self._publish_state()
        self._kill_flag.beat()  # readers take a state not written for a while as stale
        self._publish_trade_enabled()
        self._health.publish(time.monotonic())

    def heartbeat(self) -> dict[str, Any]:
        """Read-only (``status`` calls it at will): state held in memory, no database read,
        which would wait for any other connection's write lock, and nothing published."""
        positions = self._store.positions()
        first = positions[min(positions)] if positions else None
        return {
            "reports": self.reports_committed,
            "commits": self.commits,
            "duplicates": self.duplicates,
            "trade_enabled": self._trade_enabled,
            "trading": {"enabled": not self._halt(), "reasons": names(self._halt())},
            "fills": self._fills_total,
            "position": first.quantity if first else 0.0,
            "pnl": sum(p.realized_pnl - p.fees for p in positions.values()),
            "database": str(self._runtime.config.paths.database),
            "commit_stalled": self._health.stalled,
            "kill_switch_pending": self._kill_switch.disable_pending,
            "backup": self._backup.status() if self._backup else None,
        }

    def update_metrics(self) -> None:
        self._metrics.trade_enabled.set(1.0 if self._trade_enabled else 0.0)
        halt = self._halt()
        for reason in WRITTEN:
            self._metrics.halted.labels((reason.name or "").lower()).set(
                1.0 if halt & reason else 0.0)
        for symbol, position in self._store.positions().items():
            self._metrics.position.labels(symbol).set(position.quantity)
            self._metrics.realized_pnl.labels(symbol).set(position.realized_pnl)

    def close(self) -> None:
        self._clock.close()
        if self._chain is not None:
            self._chain.close()
        if self._backup is not None:
            self._backup.stop(timeout_s=self._runtime.config.run.stop_timeout_s * 0.15)
        self._reports.close()
        self._kill_switch.audit_refusals(time.monotonic(), every=True)
        if self._kill_switch.disable_pending:
            self._runtime.log.error(
                "stopping with a disable not yet in the database: the kill flag keeps it "
                "(marked pending) and the next ledger writes it",
                extra={"event": "ledger.kill_switch_not_durable"})
        self._kill_flag.close()
        self._engine.dispose()
        self._read_engine.dispose()
