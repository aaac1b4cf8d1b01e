"""``pipeline run``: start the four processes, watch them, stop them in order.

Start order is ledger, executor, strategy, ingest (each waits for the previous one's first
heartbeat, so the executor hears ``TRADE_ENABLED`` before the first intent); stop order is
the reverse, each process draining before the next one is asked to stop, so every tick
already read becomes an intent, every intent a report, every report a committed row.
A child that dies unexpectedly stops the whole run with a non-zero exit. A child silent for
``run.heartbeat_timeout_s`` is reported (trading already halts then: the trading state reads
as stale); one silent for ``run.hang_timeout_s`` is declared hung and stopped or restarted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from pipeline import ring
from pipeline.config import PROCESSES, PipelineConfig
from pipeline.control import EventSubscriber
from pipeline.dirlock import LOCK_FD_ENV, RunLocks
from pipeline.endpoints import Endpoints
from pipeline.killflag import flag_path, holds_pending_disable
from pipeline.lineage import spawn
from pipeline.logs import last_error
from pipeline.summary import RunSummary, format_summary, read_summary
from pipeline.topology import RingSpecs

log = logging.getLogger("pipeline.run")


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes] | None = None
    last_beat: dict[str, Any] = field(default_factory=dict)
    last_beat_at: float = 0.0
    silence_reported: bool = False
    hung_reported: bool = False


class Launcher:
    def __init__(self, config: PipelineConfig, config_path: Path | None,
                 duration_s: float | None, locks: RunLocks, *, interactive: bool) -> None:
        self.config = config
        self.locks = locks  # held since before anything was created; children inherit them
        self.config_path = config_path
        self.duration_s = duration_s
        self.interactive = interactive
        self.paths = config.paths
        self.run_id = uuid.uuid4()
        self.children = {name: Child(name) for name in PROCESSES}
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.stop_requested = False
        self.failed: str | None = None
        self._last_plain_status = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        self._report_leftover_segments()
        endpoints = Endpoints(self.config.control, self.paths.run_dir)
        events = EventSubscriber(self.context, self.paths.run_dir, PROCESSES,
                                 topics=["heartbeat."],
                                 connect=lambda sock, p: endpoints.connect(sock, p, "events"))
        started_at = time.monotonic()
        sidecar = None
        if self.config.env == "localnet":  # the offline venue runs beside the four processes
            from pipeline.localnet.sidecar import Sidecar
            sidecar = Sidecar(self.config, self.config_path,
                              pass_fds=self.locks.fds_for("localnet"))
            self.failed = sidecar.start()
        try:
            for name in PROCESSES:
                if self.stop_requested or self.failed:
                    break
                self._start(name)
                self._await_first_beat(name, events)
            while not self.stop_requested and not self.failed:
                self._watch(events)
                if self.duration_s is not None and \
                        time.monotonic() - started_at >= self.duration_s:
                    break
        finally:
            self._stop_all(events)
            if sidecar is not None:
                sidecar.stop()
            events.close()
            self.context.destroy(linger=0)
        self._unlink_drained_rings()
        self.locks.close()
        summary = read_summary(self.paths.database, time.monotonic() - started_at)
        self._print_summary(summary)
        if self.failed:
            log.error("run failed: %s", self.failed, extra={"event": "run.failed"})
            return 1
        return 0

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested:
            for child in self.children.values():
                if child.popen and child.popen.poll() is None:
                    child.popen.kill()
            os._exit(1)
        self.stop_requested = True

    def _command(self, name: str) -> list[str]:
        cmd = [sys.executable, "-m", "pipeline", name, "--env", self.config.env,
               "--data-dir", str(self.paths.data_dir)]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd

    def _start(self, name: str) -> None:
        own_lock = self.locks.processes[name]
        env = dict(os.environ, PIPELINE_RUN_ID=str(self.run_id), PIPELINE_CHILD="1",
                   **{LOCK_FD_ENV: str(own_lock.fd)})
        child = self.children[name]
        child.popen = spawn(self._command(name), env, pass_fds=self.locks.fds_for(name))
        child.last_beat_at = time.monotonic()
        child.silence_reported = child.hung_reported = False
        log.info("started %s (pid %d)", name, child.popen.pid,
                 extra={"event": "run.child_started", "child": name, "pid": child.popen.pid})

    def _await_first_beat(self, name: str, events: EventSubscriber) -> None:
        deadline = time.monotonic() + self.config.run.start_timeout_s
        child = self.children[name]
        while time.monotonic() < deadline and not self.stop_requested:
            self._absorb(events.receive(50))
            if child.last_beat.get("state") == "running":
                return
            if child.popen is not None and child.popen.poll() is not None:
                self.failed = (f"{name} exited with code {child.popen.returncode} at start-up"
                               f"{self._last_error(child)}")
                return
        if not self.stop_requested:
            self.failed = f"{name} sent no heartbeat within {self.config.run.start_timeout_s} s"

    def _absorb(self, received: list[tuple[str, dict[str, Any]]]) -> None:
        now = time.monotonic()
        for topic, body in received:
            name = topic.removeprefix("heartbeat.")
            child = self.children.get(name)
            if child is not None and body.get("pid") == (child.popen.pid if child.popen else 0):
                child.last_beat = body
                child.last_beat_at = now
                if child.silence_reported:
                    log.info("%s is heartbeating again", name, extra={"event": "run.recovered"})
                    child.silence_reported = False

    def _watch(self, events: EventSubscriber) -> None:
        self._absorb(events.receive(250))
        now = time.monotonic()
        for child in self.children.values():
            assert child.popen is not None
            code = child.popen.poll()
            if code is not None:
                self.failed = (f"{child.name} died unexpectedly with exit code {code}"
                               f"{self._last_error(child)}")
                return
            silent_s = now - child.last_beat_at
            if silent_s > self.config.run.heartbeat_timeout_s and not child.silence_reported:
                child.silence_reported = True
                log.warning("%s has not heartbeated for %.1f s; declared hung after %.0f s",
                            child.name, silent_s, self.config.run.hang_timeout_s,
                            extra={"event": "run.child_silent", "child": child.name})
            if silent_s > self.config.run.hang_timeout_s and not child.hung_reported:
                child.hung_reported = True
                log.error("%s has not heartbeated for %.1f s (hung)", child.name, silent_s,
                          extra={"event": "run.child_hung", "child": child.name})
                if self.config.run.on_hang == "restart":
                    child.popen.kill()
                    child.popen.wait()
                    self._start(child.name)
                else:
                    self.failed = f"{child.name} stopped heartbeating (hung)"
                    return
        self._show_status()

    def _stop_all(self, events: EventSubscriber) -> None:
        for name in reversed(PROCESSES):
            child = self.children[name]
            if child.popen is None or child.popen.poll() is not None:
                continue
            child.popen.send_signal(signal.SIGTERM)
            try:
                child.popen.wait(timeout=self.config.run.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0f s; killing it", name,
                          self.config.run.stop_timeout_s, extra={"event": "run.kill"})
                child.popen.kill()
                child.popen.wait()
            self._absorb(events.receive(0))
            code = child.popen.returncode
            if code != 0 and not self.failed:
                self.failed = (f"{name} exited with code {code} while stopping"
                               f"{self._last_error(child)}")
        if self.interactive:
            sys.stdout.write("\n")

    def _last_error(self, child: Child) -> str:
        """``: <reason>`` from the child's own log, so the operator need not go and look."""
        if child.popen is None:
            return ""
        reason = last_error(self.paths.log_dir / f"{child.name}.log", child.popen.pid)
        return f": {reason}" if reason else ""

    # -- rings ------------------------------------------------------------------------------
    def _segment_paths(self) -> list[Path]:
        shm = Path(self.config.rings.shm_dir)
        return [shm / spec.name for spec in RingSpecs.from_config(self.config).all()]

    def _report_leftover_segments(self) -> None:
        for path in self._segment_paths():
            info = ring.inspect_segment(path)
            if info is not None:
                log.warning("ring %s left by run %s (%d unread records): reusing it",
                            info.name, info.run_id, info.unread,
                            extra={"event": "run.leftover_ring", "ring": info.name})

    def _unlink_drained_rings(self) -> None:
        for path in self._segment_paths():
            info = ring.inspect_segment(path)
            if info is None:
                continue
            if info.lossless and info.unread:
                log.error("ring %s still holds %d unread records; kept for the next run",
                          info.name, info.unread, extra={"event": "run.ring_kept"})
                continue
            ring.unlink(path.name, path.parent)
        # Every process has stopped: nobody reads the kill flag any more, unless it carries
        # a disable the database never took (the next ledger must write it).
        flag = flag_path(Path(self.config.rings.shm_dir), self.paths.ring_prefix)
        if holds_pending_disable(flag):
            log.warning("kill flag %s kept: it holds a disable not yet in the database",
                        flag, extra={"event": "run.kill_flag_kept"})
        else:
            ring.unlink(flag.name, flag.parent)

    # -- output -----------------------------------------------------------------------------
    def _show_status(self) -> None:
        line = status_line({name: c.last_beat for name, c in self.children.items()})
        if self.interactive:
            sys.stdout.write("\r" + line[:160].ljust(160))
            sys.stdout.flush()
        elif time.monotonic() - self._last_plain_status >= 5.0:
            self._last_plain_status = time.monotonic()
            print(line, flush=True)

    def _print_summary(self, summary: RunSummary | None) -> None:
        print(format_summary(summary, self.paths.database), flush=True)


def status_line(beats: dict[str, dict[str, Any]]) -> str:
    """One line of the numbers an operator watches while the pipeline runs."""
    ingest, executor, ledger = beats["ingest"], beats["executor"], beats["ledger"]
    latency = executor.get("tick_to_order") or {}
    p99 = f"{latency['p99_us']:.0f}us" if "p99_us" in latency else "-"
    position = ledger.get("position", 0.0)
    pnl = ledger.get("pnl", 0.0)
    enabled = {True: "on", False: "OFF", None: "?"}[executor.get("trade_enabled")]
    return (f"ticks/s {ingest.get('ticks_per_s', 0):>7.0f} | ticks {ingest.get('ticks', 0)} | "
            f"orders {executor.get('orders', 0)} | fills {ledger.get('fills', 0)} | "
            f"pos {position:+.4f} | PnL {pnl:+.2f} | t2o p99 {p99} | trading {enabled}")
