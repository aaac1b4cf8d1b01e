"""What a process of the pipeline is built on: config, logs, metrics, sockets and ports.

``main()`` of each process builds a :class:`Runtime` once and injects it into its service
(run by :mod:`pipeline.service`). Its :class:`~pipeline.ports.Ports` open the rings this
process reads and writes as :mod:`pipeline.topology` declares them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq
from prometheus_client import CollectorRegistry

from pipeline import dirlock
from pipeline.config import PipelineConfig
from pipeline.control import EventPublisher
from pipeline.endpoints import Endpoints, ZapGuard
from pipeline.logs import setup_logging
from pipeline.metrics import CommonMetrics
from pipeline.ports import Ports
from pipeline.reload import config_digest
from pipeline.wakeup import BellRinger, Doorbell


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
    ports: Ports  # this process's rings, opened as the topology declares them
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
        ringer = BellRinger(paths.run_dir)
        ports = Ports(config, name, run_id=run_id, log=log, ring_bell=ringer)
        return cls(config=config, name=name, run_id=run_id, log=log, registry=registry,
                   metrics=metrics, zmq_context=context,
                   ringer=ringer, doorbell=Doorbell(paths.run_dir, name),
                   ports=ports, events=events, endpoints=endpoints,
                   guard=guard, loader=loader, config_digest=config_digest(config), lock=lock)

    def close(self) -> None:
        self.events.close()
        self.ringer.close()
        self.doorbell.close()
        if self.guard is not None:
            self.guard.stop()
        self.zmq_context.destroy(linger=0)
        if self.lock is not None:
            self.lock.close()
