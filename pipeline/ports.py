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

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.ring import RingReader, RingSpec, RingWriter
from pipeline.topology import RingSpecs, Stream, backpressure_s, stream


class InputPort:
    """One process's reader of one ring stream, re-attached across writer restarts.

    ``read``, ``peek``, ``advance`` and ``available`` are the current reader's own bound
    methods, stored on the port and rebound on re-attach: on the hot path a call costs
    what a call on the :class:`~pipeline.ring.RingReader` costs.
    """

    read: Callable[[int], np.ndarray]
    peek: Callable[[int], np.ndarray]
    advance: Callable[[int], None]
    available: Callable[[], int]
    reader: RingReader

    def __init__(self, declared: Stream, process: str, open_reader: Callable[[], RingReader],
                 log: logging.Logger,
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
        self._open = open_reader
        self._resume = resume
        self._log = log
        self._attach(open_reader())

    def _attach(self, reader: RingReader) -> None:
        if self._resume is not None:
            self._resume(reader)
        self.reader = reader
        self.read = reader.read
        self.peek = reader.peek
        self.advance = reader.advance
        self.available = reader.available

    def follow(self) -> bool:
        """Re-attach if the writer closed the segment in order and nothing is left unread
        in it; True if it did (the caller may reset what it derived from the old ring)."""
        reader = self.reader
        if not reader.closed or reader.available() > 0:
            return False
        reader.close()
        self._log.info("writer closed the ring in order; re-attaching",
                       extra={"event": "ring.reattach", "ring": reader.spec.name,
                              "reader": reader.name, "resume": self.policy.value})
        self._attach(self._open())
        return True

    # Cold-path views of the current reader (status, metrics, drain).
    @property
    def cursor(self) -> int:
        return self.reader.cursor

    @property
    def closed(self) -> bool:
        return self.reader.closed

    @property
    def lost(self) -> int:
        return self.reader.lost

    @property
    def spec(self) -> RingSpec:
        return self.reader.spec

    def close(self) -> None:
        self.reader.close()


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
        declared = stream(name)
        spec = self.specs.by_stream(name)
        config = self._config
        return InputPort(
            declared, self.process,
            lambda: RingReader(spec, self.process, env=config.env, run_id=self._run_id,
                               shm_dir=Path(config.rings.shm_dir)),
            self._log, resume)

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
