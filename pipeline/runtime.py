"""The process model shared by ingest, strategy, executor and ledger.

``main()`` of each process builds a :class:`Runtime` (config, logger, metrics registry,
ZeroMQ context, doorbell) and a :class:`Service`, then calls :func:`run_service`. The lifecycle is
explicit and visible in metrics and heartbeats: starting -> running -> draining -> stopped.
SIGTERM or SIGINT starts draining; a second one forces exit. An unexpected exception stops
the process with a non-zero exit and a log line: where money moves we never limp on, the
supervisor restarts us from durable state.
"""

from __future__ import annotations

import abc
import contextlib
import gc
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import zmq
from prometheus_client import CollectorRegistry

from pipeline import dirlock, killflag, ring
from pipeline.bootstrap import refuse_at_start
from pipeline.config import PipelineConfig
from pipeline.control import (
    ControlError,
    ControlServer,
    EventPublisher,
    Handler,
    control_address,
)
from pipeline.control_peers import PeerBuckets, Refusal
from pipeline.endpoints import Endpoints, ZapGuard
from pipeline.errors import EXIT_CRASH, EXIT_OK, EXIT_OPERATIONAL, OperationalError
from pipeline.lineage import LAUNCHER_GONE
from pipeline.logs import setup_logging
from pipeline.metrics import CommonMetrics, serve
from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, TICK_DTYPE
from pipeline.reload import ConfigReloader, config_digest
from pipeline.sched import request_slice
from pipeline.startup import operator_problem
from pipeline.stopping import drain_timeout_s
from pipeline.wakeup import BellRinger, Doorbell, Waiter

_CONTROL_POLL_S = 0.005  # how often a busy loop answers control requests


@dataclass(frozen=True)
class RingSpecs:
    """The three rings, derived from config so every process agrees on them.

    The first declared reader of a lossless ring is its system of record (the executor
    for intents, the ledger for reports): ``pipeline run`` keeps a ring at the end of a
    run only if that reader has not consumed everything. The strategy's copy of the
    reports only keeps its risk exposure true while it runs.
    """

    ticks: ring.RingSpec
    intents: ring.RingSpec
    reports: ring.RingSpec

    @classmethod
    def from_config(cls, config: PipelineConfig) -> RingSpecs:
        prefix = config.paths.ring_prefix
        rings = config.rings
        return cls(
            ticks=ring.RingSpec(f"{prefix}-ticks", TICK_DTYPE, rings.ticks_capacity,
                                lossless=False, readers=("strategy", "executor", "monitor")),
            intents=ring.RingSpec(f"{prefix}-intents", INTENT_DTYPE, rings.intents_capacity,
                                  lossless=True, readers=("executor",)),
            reports=ring.RingSpec(f"{prefix}-reports", REPORT_DTYPE, rings.reports_capacity,
                                  lossless=True, readers=("ledger", "strategy")),
        )

    def all(self) -> tuple[ring.RingSpec, ...]:
        return (self.ticks, self.intents, self.reports)


@dataclass
class Runtime:
    """Everything a service needs from its process, built once in main() and injected."""

    config: PipelineConfig
    name: str
    run_id: uuid.UUID
    log: logging.Logger
    registry: CollectorRegistry
    metrics: CommonMetrics
    zmq_context: zmq.Context[zmq.Socket[bytes]]
    ringer: BellRinger
    doorbell: Doorbell
    rings: RingSpecs
    events: EventPublisher
    endpoints: Endpoints
    guard: ZapGuard | None = None  # the CURVE allow-list, when configured
    loader: Callable[[], PipelineConfig] | None = None  # re-reads the config for reload
    lock: dirlock.DirLock | None = None  # this process's hold on the data dir
    config_version: int = 1
    config_digest: str = ""
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def build(cls, config: PipelineConfig, name: str, *, to_stderr: bool = True,
              loader: Callable[[], PipelineConfig] | None = None) -> Runtime:
        paths = config.paths
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        log = setup_logging(name, config.env, paths.log_dir, level=config.log.level,
                            keep_days=config.log.keep_days, to_stderr=to_stderr)
        # Before any socket is bound or ring opened: a second process of this name on this
        # data dir must stop here, touching nothing of the first one's.
        lock = dirlock.for_process(paths.run_dir, name)
        run_id_text = os.environ.get("PIPELINE_RUN_ID")
        run_id = uuid.UUID(run_id_text) if run_id_text else uuid.uuid4()
        registry = CollectorRegistry()
        metrics = CommonMetrics(registry)
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        endpoints = Endpoints(config.control, paths.run_dir)
        # The ZAP handler must exist before the first CURVE socket binds.
        guard = endpoints.start_guard(
            context, log, on_denied=metrics.bad_control.labels("unauthorised").inc)
        events = EventPublisher(context, "",
                                bind=lambda sock: endpoints.bind(sock, name, "events"))
        return cls(config=config, name=name, run_id=run_id, log=log, registry=registry,
                   metrics=metrics, zmq_context=context,
                   ringer=BellRinger(paths.run_dir), doorbell=Doorbell(paths.run_dir, name),
                   rings=RingSpecs.from_config(config), events=events, endpoints=endpoints,
                   guard=guard, loader=loader, config_digest=config_digest(config), lock=lock)

    def ring_kwargs(self) -> dict[str, Any]:
        return {"env": self.config.env, "run_id": self.run_id,
                "shm_dir": Path(self.config.rings.shm_dir)}

    def close(self) -> None:
        self.events.close()
        self.ringer.close()
        self.doorbell.close()
        if self.guard is not None:
            self.guard.stop()
        self.zmq_context.destroy(linger=0)
        if self.lock is not None:
            self.lock.close()


class Service(abc.ABC):
    """One process's work, driven by :func:`run_service`."""

    spin_us: int = 0
    live_sections: Sequence[str] = ()  # config sections reload() applies while running
    never_rate_limited: Sequence[str] = ()  # commands a peer's refusal budget never blocks

    @abc.abstractmethod
    def step(self) -> bool:
        """Do one unit of work; return False when there was nothing to do."""

    @abc.abstractmethod
    def drain(self) -> bool:
        """Work towards an orderly stop; return True once nothing is left in flight."""

    def readers(self) -> Sequence[ring.RingReader]:
        """Rings this process reads (for status, lag metrics and waking)."""
        return ()

    def wake_readers(self) -> Sequence[ring.RingReader]:
        """Rings whose new records should end an idle wait (default: all of readers())."""
        return self.readers()

    def idle_timeout_s(self) -> float | None:
        """How long to sleep when idle (None: until woken, within the heartbeat interval)."""
        return None

    def heartbeat(self) -> dict[str, Any]:
        """Counters published with each heartbeat and returned by ``status``: read-only."""
        return {}

    def handlers(self) -> Mapping[str, Handler]:
        """Extra control commands of this process."""
        return {}

    def refused(self, refusal: Refusal) -> bool:
        """A control request was refused; True if that cost something (an audit row), which
        is charged to the peer's refusal budget. Default: refusals cost nothing."""
        return False

    def sockets(self) -> Sequence[zmq.Socket[bytes]]:
        """Extra sockets whose traffic should wake this process; handled in :meth:`step`."""
        return ()

    def reload(self, config: PipelineConfig) -> None:  # noqa: B027
        """Apply the ``live_sections`` of ``config`` between two steps, or raise ConfigError
        (nothing applied) to keep the old config."""

    def on_heartbeat(self) -> None:  # noqa: B027
        """Periodic work due with each heartbeat (re-publishing state for late subscribers,
        health checks). ``status`` never calls it: answering a status changes nothing."""

    def update_metrics(self) -> None:  # noqa: B027
        """Refresh gauges; called with each heartbeat."""

    def close(self) -> None:  # noqa: B027
        """Release rings and files after draining."""


class _Signals:
    """First SIGTERM/SIGINT asks for a drain; the second forces exit. The launcher's death
    (:data:`~pipeline.lineage.LAUNCHER_GONE`, possibly repeated) only ever asks for a drain."""

    def __init__(self, log: logging.Logger) -> None:
        self.stop_requested = False
        self.reload_requested = False
        self._log = log

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        signal.signal(LAUNCHER_GONE, self._launcher_gone)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested:
            self._log.warning("second stop signal: exiting now",
                              extra={"event": "process.force_exit"})
            os._exit(EXIT_CRASH)
        self.stop_requested = True

    def _launcher_gone(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop_requested = True

    def _hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested = True


def run_service(runtime: Runtime, make_service: Callable[[Runtime], Service]) -> int:
    """Run a service through its lifecycle; returns the process exit code."""
    log = runtime.log
    signals = _Signals(log)
    signals.install()
    state = "starting"
    runtime.metrics.set_state(state)
    config = runtime.config
    try:
        port = _serve_metrics(runtime)
        ring.check_space(runtime.rings.all(), Path(config.rings.shm_dir),
                         extra_bytes=killflag.SIZE)
        refuse_at_start(runtime.name, config, runtime.registry, log)
        service = make_service(runtime)
    except Exception as exc:
        problem = operator_problem(exc)
        if problem is None:
            log.exception("unexpected failure while starting", extra={"event": "process.crash"})
            runtime.close()
            return EXIT_CRASH
        # Config or environment: the same on every retry, so no restart loop and no traceback.
        # The JSON log is where the operator and the log shipper look; stderr (supervisor's
        # <process>.stderr.log, a terminal) gets the same line, as for earlier failures.
        log.error("cannot start: %s", problem, extra={"event": "process.start_failed"})
        print(f"pipeline {runtime.name}: cannot start: {problem}", file=sys.stderr)
        runtime.close()
        return EXIT_OPERATIONAL
    events = runtime.events
    status_fn = _status_handler(runtime, service, lambda: state)
    reload_fn = _reload_handler(runtime, service)
    handlers: dict[str, Handler] = {"ping": lambda _args: {"pong": runtime.name},
                                    "status": status_fn,
                                    "reload": lambda _args: reload_fn("control")}
    handlers.update(service.handlers())
    control = ControlServer(runtime.zmq_context,
                            control_address(config.paths.run_dir, runtime.name),
                            runtime.name, handlers,
                            on_bad_request=lambda code: runtime.metrics.bad_control.labels(
                                code).inc(),
                            on_handler_error=lambda command: runtime.metrics.handler_errors
                            .labels(command).inc(),
                            on_refused=service.refused,
                            limiter=PeerBuckets(config.control.refusal_burst,
                                                config.control.refusal_per_s),
                            unlimited=service.never_rate_limited,
                            bind=lambda sock: runtime.endpoints.bind(sock, runtime.name, "ctl"))
    slice_us = config.run.slice_us.get(runtime.name)
    if slice_us:
        refused = request_slice(slice_us)
        if refused:
            log.warning("scheduler slice of %d us refused: %s", slice_us, refused,
                        extra={"event": "process.slice_refused"})
    waiter = Waiter(runtime.doorbell, service.wake_readers(), spin_us=service.spin_us,
                    max_block_s=config.run.heartbeat_interval_s / 2)
    waiter.register(control.socket)
    for sock in service.sockets():
        waiter.register(sock)
    # Everything built so far (modules, config, rings) lives as long as the process: move it
    # out of the collector's reach, or each full collection walks it (milliseconds here,
    # straight onto the tick-to-order tail).
    gc.collect()
    gc.freeze()
    log.info("started", extra={"event": "process.started", "run_id": str(runtime.run_id),
                               "metrics_port": port, "config": config.source})
    interval_s = config.run.heartbeat_interval_s
    next_beat = 0.0
    next_control = 0.0
    exit_code = EXIT_OK
    try:
        state = "running"
        runtime.metrics.set_state(state)
        while not signals.stop_requested:
            did_work = service.step()
            now = time.monotonic()
            if now >= next_beat:
                _beat(runtime, service, events, state)
                control.handle_pending()
                next_beat = now + interval_s
            elif now >= next_control:
                # A busy loop never idles into the waiter: look at the control socket
                # (a kill switch, a pause) and SIGHUP every few milliseconds anyway.
                control.handle_pending()
                if signals.reload_requested:
                    signals.reload_requested = False
                    _reload_quietly(reload_fn)
                next_control = now + _CONTROL_POLL_S
            if not did_work:
                waiter.set_readers(service.wake_readers())
                timeout = service.idle_timeout_s()
                if timeout is not None and timeout < 0.002:
                    if timeout > 0:
                        time.sleep(timeout)
                elif waiter.wait(timeout):
                    control.handle_pending()
        state = "draining"
        runtime.metrics.set_state(state)
        log.info("draining", extra={"event": "process.draining"})
        deadline = time.monotonic() + drain_timeout_s(runtime.name, config.run.stop_timeout_s)
        while not service.drain():
            if time.monotonic() > deadline:
                log.error("drain timed out with work in flight",
                          extra={"event": "process.drain_timeout"})
                exit_code = EXIT_CRASH
                break
            if time.monotonic() >= next_beat:
                _beat(runtime, service, events, state)
                control.handle_pending()
                next_beat = time.monotonic() + interval_s
            waiter.set_readers(service.wake_readers())
            waiter.wait(0.01)
    except OperationalError as exc:
        log.error("stopping: %s", exc, extra={"event": "process.operational_error"})
        exit_code = EXIT_OPERATIONAL
    except Exception:
        log.exception("unexpected failure: stopping so the supervisor restarts us from "
                      "durable state", extra={"event": "process.crash"})
        exit_code = EXIT_CRASH
    state = "stopped"
    runtime.metrics.set_state(state)
    final = _heartbeat_body(runtime, service, state)
    _beat(runtime, service, events, state)
    service.close()
    control.close()
    runtime.close()
    log.info("stopped", extra={"event": "process.stopped", "exit_code": exit_code,
                               "final": final})
    return exit_code


def _serve_metrics(runtime: Runtime) -> int:
    config = runtime.config
    try:
        return serve(runtime.registry, config.metrics.host,
                     config.metrics.ports.get(runtime.name, 0),
                     config.paths.run_dir / f"{runtime.name}.metrics-port",
                     certfile=config.metrics.certfile, keyfile=config.metrics.keyfile,
                     client_cafile=config.metrics.client_cafile)
    except OSError as exc:
        raise OperationalError(f"cannot serve metrics on {config.metrics.host}:"
                               f"{config.metrics.ports.get(runtime.name)}: {exc}") from exc


def _reload_handler(runtime: Runtime, service: Service) -> Callable[[str], Mapping[str, Any]]:
    reloader = ConfigReloader(runtime.config, runtime.loader, service, runtime.log,
                              on_refused=runtime.metrics.reload_refused.inc)

    def reload(trigger: str) -> Mapping[str, Any]:
        result = reloader.reload(trigger)
        runtime.config = reloader.config
        runtime.config_version = reloader.version
        runtime.config_digest = config_digest(reloader.config)
        return result
    return reload


def _reload_quietly(reload_fn: Callable[[str], Mapping[str, Any]]) -> None:
    """SIGHUP has no one to answer: a refused config is already logged by the reloader."""
    with contextlib.suppress(ControlError):
        reload_fn("SIGHUP")


def _status_handler(runtime: Runtime, service: Service,
                    state: Callable[[], str]) -> Handler:
    def status(_args: Mapping[str, Any]) -> Mapping[str, Any]:
        return _heartbeat_body(runtime, service, state())
    return status


def _heartbeat_body(runtime: Runtime, service: Service, state: str) -> dict[str, Any]:
    body = {"process": runtime.name, "state": state, "pid": os.getpid(),
            "run_id": str(runtime.run_id), "env": runtime.config.env,
            "uptime_s": round(time.monotonic() - runtime.started_at, 3),
            "config_version": runtime.config_version, "config_digest": runtime.config_digest,
            "rings": ring.reader_positions(service.readers())}
    body.update(service.heartbeat())
    return body


def _beat(runtime: Runtime, service: Service, events: EventPublisher, state: str) -> None:
    service.on_heartbeat()
    service.update_metrics()
    for reader in service.readers():
        runtime.metrics.ring_lag.labels(reader.spec.name, reader.name).set(reader.available())
    runtime.metrics.heartbeat.set(time.time())
    events.publish(f"heartbeat.{runtime.name}", _heartbeat_body(runtime, service, state))
