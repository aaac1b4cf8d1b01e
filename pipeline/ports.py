"""The ring ports a service reads and writes, built from :mod:`pipeline.topology`.

A process asks for a stream by name (``ports.reader("ticks")``, ``ports.writer("intents")``)
and gets it opened as the table declares it: the segment name and size, the declared
reader, the writer's back-pressure bound and doorbell. An :class:`InputPort` also follows
its writer across an orderly restart (:meth:`InputPort.follow`), the one re-attach
mechanism every reader shares.

Re-attach: an orderly writer unlinks its segment and marks it closed; a reader that has
consumed all it holds then opens the segment by name again, which is either the writer's
new one or one it creates itself (either side may create). A crashed writer never marks
the segment, so the restarted writer reuses it and readers simply continue. Where the
reader resumes is the stream's :class:`~pipeline.topology.Resume` policy: from the ring's
own cursor, or, for readers that keep their position elsewhere (the ledger's committed
cursor, the ledger's snapshot for the strategy), through the reader's ``resume`` hook,
called on the first attach and on every re-attach.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.ring import RingReader, RingSpec, RingWriter
from pipeline.topology import RingSpecs, Stream, backpressure_s, stream


class InputPort(RingReader):
    """One process's reader of one ring stream, re-attached in place across writer restarts.

    The port *is* the :class:`~pipeline.ring.RingReader` (re-attaching re-opens it on the
    new segment), so ``read``, ``peek``, ``available`` and ``cursor`` are the reader's own:
    the hot path pays nothing for the port.
    """

    def __init__(self, declared: Stream, spec: RingSpec, process: str, *, env: str,
                 run_id: uuid.UUID, shm_dir: Path, log: logging.Logger,
                 resume: Callable[[RingReader], None] | None = None) -> None:
        policy = declared.reader(process).resume
        if policy.reader_positions and resume is None:
            raise ValueError(f"{process} reads {declared.name} resuming from its "
                             f"{policy.value}: give the port a resume hook")
        if resume is not None and not policy.reader_positions:
            raise ValueError(f"{process} reads {declared.name} from its {policy.value}: "
                             "the ring keeps the position, a resume hook would contradict it")
        self.stream = declared
        self.policy = policy
        self._spec = spec
        self._process = process
        self._env, self._run_id, self._shm_dir = env, run_id, shm_dir
        self._resume = resume
        self._log = log
        self._attach()

    def _attach(self) -> None:
        super().__init__(self._spec, self._process, env=self._env, run_id=self._run_id,
                         shm_dir=self._shm_dir)
        if self._resume is not None:
            self._resume(self)

    def follow(self) -> bool:
        """Re-attach if the writer closed the segment in order and nothing is left unread
        in it; True if it did (the caller may reset what it derived from the old ring)."""
        if not self.closed or self.available() > 0:
            return False
        self.close()
        self._log.info("writer closed the ring in order; re-attaching",
                       extra={"event": "ring.reattach", "ring": self._spec.name,
                              "reader": self._process, "resume": self.policy.value})
        self._attach()
        return True


class Ports:
    """The rings of one process (``process``), opened as :mod:`pipeline.topology` says."""

    def __init__(self, config: PipelineConfig, process: str, *, run_id: uuid.UUID,
                 log: logging.Logger, ring_bell: Callable[[str], None] | None = None) -> None:
        self.process = process
        self.specs = RingSpecs.from_config(config)
        self._config = config
        self._run_id = run_id
        self._log = log
        self._ring_bell = ring_bell

    def reader(self, name: str, *,
               resume: Callable[[RingReader], None] | None = None) -> InputPort:
        """This process's reader of ring ``name`` (KeyError if it is not declared one)."""
        config = self._config
        return InputPort(stream(name), self.specs.by_stream(name), self.process,
                         env=config.env, run_id=self._run_id,
                         shm_dir=Path(config.rings.shm_dir), log=self._log, resume=resume)

    def writer(self, name: str) -> RingWriter:
        """The writer of ring ``name``; ValueError if another process is its writer."""
        declared = stream(name)
        if declared.writer != self.process:
            raise ValueError(f"{self.process} is not the writer of {name} "
                             f"({declared.writer} is)")
        config = self._config
        return RingWriter(self.specs.by_stream(name), env=config.env, run_id=self._run_id,
                          ring_bell=self._ring_bell, shm_dir=Path(config.rings.shm_dir),
                          backpressure_timeout_s=backpressure_s(declared, config))

    def peer(self, process: str) -> Ports:
        """The same rings as ``process`` sees them (tests and tools playing the other side)."""
        return Ports(self._config, process, run_id=self._run_id, log=self._log,
                     ring_bell=self._ring_bell)
