"""A service and the runner that takes it through its phases.

``main()`` of each process builds a :class:`~pipeline.runtime.Runtime` and hands it, with a
factory for its :class:`Service`, to :func:`run_service`. The runner (modelled on uvicorn's
``Server``) goes ``run()`` -> :meth:`ServiceRunner.startup` -> :meth:`~ServiceRunner.main_loop`
-> :meth:`~ServiceRunner.drain` -> :meth:`~ServiceRunner.shutdown`, and its :class:`Phase`
is what metrics (``pipeline_process_state``) and heartbeats report: starting -> running ->
draining -> stopped. SIGTERM or SIGINT starts draining, a second one forces exit
(:class:`Signals`, the one place signals are handled). An unexpected exception stops the
process with a non-zero exit and a log line: where money moves we never limp on, the
supervisor restarts us from durable state.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

import zmq

from pipeline import killflag, ring
from pipeline.bootstrap import refuse_at_start
from pipeline.config import PipelineConfig
from pipeline.control import ControlError, ControlServer, Handler, control_address
from pipeline.control_peers import PeerBuckets, Refusal
from pipeline.errors import EXIT_CRASH, EXIT_OK, EXIT_OPERATIONAL, OperationalError
from pipeline.lineage import LAUNCHER_GONE
from pipeline.metrics import serve
from pipeline.reload import ConfigReloader, config_digest
from pipeline.runtime import Runtime
from pipeline.sched import cpus_for, pin_process, request_slice
from pipeline.startup import operator_problem
from pipeline.stopping import drain_timeout_s
from pipeline.wakeup import Waitable, Waiter

_CONTROL_POLL_S: Final = 0.005  # how often a busy loop answers control requests


class Phase(enum.Enum):
    """A service's phase; the value is what metrics and heartbeats say."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class Service(abc.ABC):
    """One process's work, driven by :class:`ServiceRunner`."""

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

    def wake_readers(self) -> Sequence[Waitable]:
        """What should end an idle wait when it has records (default: all of readers())."""
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


class Signals:
    """First SIGTERM/SIGINT asks for a drain; the second forces exit. The launcher's death
    (:data:`~pipeline.lineage.LAUNCHER_GONE`, possibly repeated) only ever asks for a drain;
    SIGHUP asks for a config reload."""

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
    """Run a service through its phases; returns the process exit code."""
    return ServiceRunner(runtime, make_service).run()


class ServiceRunner:
    """Start-up, main loop, drain and shutdown of one service, with its phase in view."""

    def __init__(self, runtime: Runtime, make_service: Callable[[Runtime], Service]) -> None:
        self.runtime = runtime
        self.phase = Phase.STARTING
        self.exit_code = EXIT_OK
        self._make_service = make_service
        self._signals = Signals(runtime.log)
        self._next_beat = 0.0

    def run(self) -> int:
        self._signals.install()
        self._enter(Phase.STARTING)
        start_failure = self.startup()
        if start_failure is not None:
            self.runtime.close()
            return start_failure
        try:
            self.main_loop()
            self.drain()
        except OperationalError as exc:
            self.runtime.log.error("stopping: %s", exc,
                                   extra={"event": "process.operational_error"})
            self.exit_code = EXIT_OPERATIONAL
        except Exception:
            self.runtime.log.exception("unexpected failure: stopping so the supervisor "
                                       "restarts us from durable state",
                                       extra={"event": "process.crash"})
            self.exit_code = EXIT_CRASH
        self.shutdown()
        return self.exit_code

    # -- phases -------------------------------------------------------------------------------
    def startup(self) -> int | None:
        """Build the service, its control socket and waiter; an exit code if it cannot start."""
        runtime, log, config = self.runtime, self.runtime.log, self.runtime.config
        try:
            port = _serve_metrics(runtime)
            ring.check_space(runtime.ports.specs.all(), Path(config.rings.shm_dir),
                             extra_bytes=killflag.SIZE)
            refuse_at_start(runtime.name, config, runtime.registry, log)
            self.service = self._make_service(runtime)
        except Exception as exc:
            problem = operator_problem(exc)
            if problem is None:
                log.exception("unexpected failure while starting",
                              extra={"event": "process.crash"})
                return EXIT_CRASH
            # Config or environment: the same on every retry, so no restart loop and no
            # traceback. The JSON log is where the operator and the log shipper look; stderr
            # (supervisor's <process>.stderr.log, a terminal) gets the same line.
            log.error("cannot start: %s", problem, extra={"event": "process.start_failed"})
            print(f"pipeline {runtime.name}: cannot start: {problem}", file=sys.stderr)
            return EXIT_OPERATIONAL
        self._reload = _reload_handler(runtime, self.service)
        self.control = self._control_server()
        slice_us = config.run.slice_us.get(runtime.name)
        if slice_us:
            refused = request_slice(slice_us)
            if refused:
                log.warning("scheduler slice of %d us refused: %s", slice_us, refused,
                            extra={"event": "process.slice_refused"})
        cpus = cpus_for(runtime.name, config.run.pin, config.run.cpus)
        if cpus is not None:
            refused = pin_process(cpus)
            if refused:
                log.warning("pinning to CPUs %s refused: %s", sorted(cpus), refused,
                            extra={"event": "process.pin_refused"})
        self.waiter = Waiter(runtime.doorbell, self.service.wake_readers(),
                             spin_us=self.service.spin_us,
                             max_block_s=config.run.heartbeat_interval_s / 2)
        self.waiter.register(self.control.socket)
        for sock in self.service.sockets():
            self.waiter.register(sock)
        # Everything built so far (modules, config, rings) lives as long as the process: move
        # it out of the collector's reach, or each full collection walks it (milliseconds
        # here, straight onto the tick-to-order tail).
        gc.collect()
        gc.freeze()
        log.info("started", extra={"event": "process.started", "run_id": str(runtime.run_id),
                                   "metrics_port": port, "config": config.source})
        return None

    def main_loop(self) -> None:
        """Step until a stop is asked for, answering control and beating in between."""
        service, control, signals, waiter = (self.service, self.control, self._signals,
                                             self.waiter)
        interval_s = self.runtime.config.run.heartbeat_interval_s
        next_control = 0.0
        self._enter(Phase.RUNNING)
        while not signals.stop_requested:
            did_work = service.step()
            now = time.monotonic()
            if now >= self._next_beat:
                self._beat()
                control.handle_pending()
                self._next_beat = now + interval_s
            elif now >= next_control:
                # A busy loop never idles into the waiter: look at the control socket
                # (a kill switch, a pause) and SIGHUP every few milliseconds anyway.
                control.handle_pending()
                if signals.reload_requested:
                    signals.reload_requested = False
                    _reload_quietly(self._reload)
                next_control = now + _CONTROL_POLL_S
            if not did_work:
                waiter.set_readers(service.wake_readers())
                timeout = service.idle_timeout_s()
                if timeout is not None and timeout < 0.002:
                    if timeout > 0:
                        time.sleep(timeout)
                elif waiter.wait(timeout):
                    control.handle_pending()

    def drain(self) -> None:
        """Let the service finish what is in flight, within the drain timeout."""
        runtime = self.runtime
        self._enter(Phase.DRAINING)
        runtime.log.info("draining", extra={"event": "process.draining"})
        interval_s = runtime.config.run.heartbeat_interval_s
        deadline = time.monotonic() + drain_timeout_s(runtime.name,
                                                       runtime.config.run.stop_timeout_s)
        while not self.service.drain():
            if time.monotonic() > deadline:
                runtime.log.error("drain timed out with work in flight",
                                  extra={"event": "process.drain_timeout"})
                self.exit_code = EXIT_CRASH
                return
            if time.monotonic() >= self._next_beat:
                self._beat()
                self.control.handle_pending()
                self._next_beat = time.monotonic() + interval_s
            self.waiter.set_readers(self.service.wake_readers())
            self.waiter.wait(0.01)

    def shutdown(self) -> None:
        """Say stopped (a last heartbeat), then release the service, control and runtime."""
        self._enter(Phase.STOPPED)
        final = heartbeat_body(self.runtime, self.service, self.phase)
        self._beat()
        self.service.close()
        self.control.close()
        self.runtime.close()
        self.runtime.log.info("stopped", extra={"event": "process.stopped",
                                                "exit_code": self.exit_code, "final": final})

    # -- helpers --------------------------------------------------------------------------------
    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self.runtime.metrics.set_state(phase.value)

    def _control_server(self) -> ControlServer:
        runtime, service = self.runtime, self.service
        config = runtime.config
        handlers: dict[str, Handler] = {
            "ping": lambda _args: {"pong": runtime.name},
            "status": lambda _args: heartbeat_body(runtime, service, self.phase),
            "reload": lambda _args: self._reload("control")}
        handlers.update(service.handlers())
        metrics = runtime.metrics
        return ControlServer(
            runtime.zmq_context, control_address(config.paths.run_dir, runtime.name),
            runtime.name, handlers,
            on_bad_request=lambda code: metrics.bad_control.labels(code).inc(),
            on_handler_error=lambda command: metrics.handler_errors.labels(command).inc(),
            on_refused=service.refused,
            limiter=PeerBuckets(config.control.refusal_burst, config.control.refusal_per_s),
            unlimited=service.never_rate_limited,
            bind=lambda sock: runtime.endpoints.bind(sock, runtime.name, "ctl"))

    def _beat(self) -> None:
        runtime, service = self.runtime, self.service
        service.on_heartbeat()
        service.update_metrics()
        for reader in service.readers():
            runtime.metrics.ring_lag.labels(reader.spec.name, reader.name).set(
                reader.available())
        runtime.metrics.heartbeat.set(time.time())
        runtime.events.publish(f"heartbeat.{runtime.name}",
                               heartbeat_body(runtime, service, self.phase))


def heartbeat_body(runtime: Runtime, service: Service, phase: Phase) -> dict[str, Any]:
    """What a heartbeat and ``status`` say about this process."""
    body = {"process": runtime.name, "state": phase.value, "pid": os.getpid(),
            "run_id": str(runtime.run_id), "env": runtime.config.env,
            "uptime_s": round(time.monotonic() - runtime.started_at, 3),
            "config_version": runtime.config_version, "config_digest": runtime.config_digest,
            "rings": ring.reader_positions(service.readers())}
    body.update(service.heartbeat())
    return body


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
