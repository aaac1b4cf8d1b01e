"""Every stream between the pipeline's processes, declared once.

One row per stream: what carries it, who writes it, who reads it and how each reader
picks up again after a restart. The rings every process opens (:class:`RingSpecs`), the
ports a service gets (:mod:`pipeline.ports`) and the README's architecture drawing
(:func:`drawing`, printed by ``python -m pipeline.topology``) all come from this table, so
a new reader or a renamed stream is one edit here.

The first reader of a lossless ring is its system of record (the executor for intents,
the ledger for reports): ``pipeline run`` keeps such a ring at the end of a run only if
that reader has not consumed everything, and a writer never overwrites what it has not
read. Reader order is also the cursor-slot order in a ring's header, so it must not change
while a segment of the old order may still exist.

This module imports neither the runtime nor the bootstrap checks: both import it.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass
from typing import Final

import numpy as np

from pipeline import ring
from pipeline.config import PipelineConfig
from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, TICK_DTYPE

EACH: Final = "each process"  # per-process streams: ingest, strategy, executor and ledger


class Kind(enum.Enum):
    """What carries a stream."""

    RING = "ring"  # pipeline.ring: a shared-memory segment, one writer, declared readers
    SHM_WORD = "shm word"  # pipeline.killflag: one page, one writer, read on every send
    ZMQ_PUB = "ZeroMQ PUB"  # pipeline.control.EventPublisher: <process>.events
    ZMQ_ROUTER = "ZeroMQ ROUTER"  # pipeline.control.ControlServer: <process>.ctl


class Delivery(enum.Enum):
    """What a reader may miss."""

    LOSSY = "lossy"  # a reader that falls behind skips records (and counts them)
    LOSSLESS = "lossless"  # the writer waits for the system of record, never overwrites
    LATEST = "latest value"  # one value, overwritten in place
    REQUEST = "request/reply"  # a client retries a request that was not answered


class Resume(enum.Enum):
    """How a reader picks up after it (or the stream's writer) restarts."""

    OWN_CURSOR = "own cursor"
    """From its cursor slot in the ring header, which outlives the reader. On a lossy ring
    records overwritten meanwhile are skipped and counted as lost; after the writer's
    orderly restart (a new segment) from the new segment's start."""
    COMMITTED_CURSOR = "committed cursor"
    """From the cursor the reader committed with its own rows (the ledger's SQLite), when
    that cursor belongs to the segment found; the reader supplies the seek."""
    LEDGER_SNAPSHOT = "ledger snapshot"
    """From where the ledger's committed positions end: the reader loads the positions and
    seeks to the cursor committed with them (the strategy's copy of the reports)."""
    LATEST_VALUE = "latest value"
    """Reads the current value; nothing to catch up on."""
    NEXT_MESSAGE = "next message"
    """ZeroMQ reconnects; the subscriber sees what is published next, and state is
    re-published with every heartbeat."""
    RETRY = "retry"
    """The client retries an unanswered request (Lazy Pirate)."""

    @property
    def reader_positions(self) -> bool:
        """Whether the reader itself positions the cursor on every (re-)attach."""
        return self in (Resume.COMMITTED_CURSOR, Resume.LEDGER_SNAPSHOT)


@dataclass(frozen=True)
class Reader:
    """One reader of a stream and why it reads it."""

    process: str
    resume: Resume
    why: str


@dataclass(frozen=True)
class Stream:
    """One stream: one writer, its readers, and where its size comes from."""

    name: str
    kind: Kind
    delivery: Delivery
    writer: str
    readers: tuple[Reader, ...]
    record: str  # the record: a dtype in pipeline.records, or the message format
    capacity: str  # the config field holding the capacity, or what bounds it
    dtype: np.dtype[np.void] | None = None  # rings only
    backpressure: str | None = None  # config field (ms) a lossless ring's writer waits
    why: str = ""

    @property
    def reader_names(self) -> tuple[str, ...]:
        return tuple(r.process for r in self.readers)

    def reader(self, process: str) -> Reader:
        for candidate in self.readers:
            if candidate.process == process:
                return candidate
        raise KeyError(f"{process!r} is not a declared reader of {self.name} "
                       f"{list(self.reader_names)}")

    @property
    def system_of_record(self) -> str | None:
        """The reader whose consumption decides what the writer may overwrite."""
        return self.readers[0].process if self.delivery is Delivery.LOSSLESS else None


STREAMS: Final[tuple[Stream, ...]] = (
    Stream(
        "ticks", Kind.RING, Delivery.LOSSY, "ingest",
        (Reader("strategy", Resume.OWN_CURSOR, "decides on every tick"),
         Reader("executor", Resume.OWN_CURSOR, "paper fills at the next tick's price"),
         Reader("localnet", Resume.OWN_CURSOR, "the localnet maker quotes the latest price")),
        record="TICK_DTYPE", capacity="rings.ticks_capacity", dtype=TICK_DTYPE,
        why="validated market ticks, sequenced and stamped at ingest"),
    Stream(
        "intents", Kind.RING, Delivery.LOSSLESS, "strategy",
        (Reader("executor", Resume.OWN_CURSOR,
                "sends them; passes an intent once its final report is out"),),
        record="INTENT_DTYPE", capacity="rings.intents_capacity", dtype=INTENT_DTYPE,
        backpressure="rings.intents_backpressure_ms",
        why="risk-checked order intents"),
    Stream(
        "reports", Kind.RING, Delivery.LOSSLESS, "executor",
        (Reader("ledger", Resume.COMMITTED_CURSOR,
                "commits them with its cursor in one SQLite transaction"),
         Reader("strategy", Resume.LEDGER_SNAPSHOT, "keeps its risk exposure true")),
        record="REPORT_DTYPE", capacity="rings.reports_capacity", dtype=REPORT_DTYPE,
        backpressure="rings.reports_backpressure_ms",
        why="execution reports, exactly one final report per intent"),
    Stream(
        "trading state", Kind.SHM_WORD, Delivery.LATEST, "ledger",
        (Reader("strategy", Resume.LATEST_VALUE, "withholds intents while halted"),
         Reader("executor", Resume.LATEST_VALUE, "reads it right before every send")),
        record="<prefix>-killswitch (reasons, pending disable, stamp)",
        capacity="one page",
        why="the reasons trading is halted, read fail-closed"),
    Stream(
        "ledger health", Kind.ZMQ_PUB, Delivery.LOSSY, "ledger",
        (Reader("admin", Resume.NEXT_MESSAGE, "`pipeline admin watch`"),),
        record="ledger.events [ledger.health, JSON]", capacity="SNDHWM 10000",
        why="commit stalls and retries, re-published every heartbeat"),
    Stream(
        "trade enabled", Kind.ZMQ_PUB, Delivery.LOSSY, "ledger",
        (Reader("admin", Resume.NEXT_MESSAGE, "`pipeline admin watch`"),),
        record="ledger.events [config.TRADE_ENABLED, JSON]", capacity="SNDHWM 10000",
        why="the kill switch's value, on change and every heartbeat"),
    Stream(
        "symbol pauses", Kind.ZMQ_PUB, Delivery.LOSSY, "strategy",
        (Reader("admin", Resume.NEXT_MESSAGE, "`pipeline admin watch`"),),
        record="strategy.events [strategy.symbol_*, JSON]", capacity="SNDHWM 10000",
        why="a symbol paused after venue refusals, or resumed"),
    Stream(
        "heartbeats", Kind.ZMQ_PUB, Delivery.LOSSY, EACH,
        (Reader("launcher", Resume.NEXT_MESSAGE, "status line, start order, liveness"),
         Reader("admin", Resume.NEXT_MESSAGE, "`pipeline admin watch`")),
        record="<process>.events [heartbeat.<process>, JSON]", capacity="SNDHWM 10000",
        why="phase (starting/running/draining/stopped), counters, cursors"),
    Stream(
        "control", Kind.ZMQ_ROUTER, Delivery.REQUEST, EACH,
        (Reader("admin", Resume.RETRY, "status, pause, kill switch, reload"),),
        record="<process>.ctl [command, JSON] -> [reply JSON]", capacity="HWM 1000",
        why="named commands answered between two steps of the loop"),
)


def stream(name: str) -> Stream:
    """The declared stream called ``name``; KeyError naming the known ones otherwise."""
    for candidate in STREAMS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no stream {name!r}; declared: {[s.name for s in STREAMS]}")


def rings() -> tuple[Stream, ...]:
    return tuple(s for s in STREAMS if s.kind is Kind.RING)


@dataclass(frozen=True)
class RingSpecs:
    """The rings as this config sizes and names them, so every process agrees on them."""

    ticks: ring.RingSpec
    intents: ring.RingSpec
    reports: ring.RingSpec

    @classmethod
    def from_config(cls, config: PipelineConfig) -> RingSpecs:
        specs = {s.name: ring_spec(s, config) for s in rings()}
        return cls(ticks=specs["ticks"], intents=specs["intents"], reports=specs["reports"])

    def all(self) -> tuple[ring.RingSpec, ...]:
        return (self.ticks, self.intents, self.reports)

    def by_stream(self, name: str) -> ring.RingSpec:
        spec: ring.RingSpec = getattr(self, name)
        return spec


def ring_spec(declared: Stream, config: PipelineConfig) -> ring.RingSpec:
    """The segment of a ring stream: ``<rings prefix>-<name>``, sized by its config field."""
    assert declared.dtype is not None, f"{declared.name} is not a ring"
    capacity = int(operator.attrgetter(declared.capacity)(config))
    return ring.RingSpec(f"{config.paths.ring_prefix}-{declared.name}", declared.dtype,
                         capacity, lossless=declared.delivery is Delivery.LOSSLESS,
                         readers=declared.reader_names)


def backpressure_s(declared: Stream, config: PipelineConfig) -> float:
    """How long the writer of a lossless ring waits for space (0 for a lossy ring)."""
    if declared.backpressure is None:
        return 0.0
    return float(operator.attrgetter(declared.backpressure)(config)) / 1000


# -- the drawing --------------------------------------------------------------------------

def _chain() -> list[Stream]:
    """The rings in flow order: from the ring whose writer reads no ring, along the system
    of record (or first reader) of each."""
    remaining = list(rings())
    read = {r.process for s in remaining for r in s.readers}
    first = next(s for s in remaining if s.writer not in read)
    chain = [first]
    remaining.remove(first)
    while remaining:
        head = chain[-1].readers[0].process
        nxt = next((s for s in remaining if s.writer == head), None)
        if nxt is None:
            break
        chain.append(nxt)
        remaining.remove(nxt)
    return chain


def _flow_lines(chain: list[Stream]) -> list[str]:
    """``feeds --> ingest ==ticks==> strategy ...`` with each ring's kind under its arrow."""
    top = "  feeds --> " + chain[0].writer
    under = " " * len(top)
    for s in chain:
        arrow = f" =={s.name}==> "
        note = f"{s.delivery.value} ring"
        top += arrow + s.readers[0].process
        under += " " + note.center(len(arrow) - 2) + " " + " " * len(s.readers[0].process)
    return [top + " --> SQLite", under.rstrip()]


def drawing() -> str:
    """The README's architecture drawing, generated from :data:`STREAMS`."""
    lines = _flow_lines(_chain())
    width = max(len(r.process) for s in STREAMS for r in s.readers) + 1
    resume = max(len(r.resume.value) for s in STREAMS for r in s.readers) + 2
    for s in STREAMS:
        verb = "serves" if s.kind is Kind.ZMQ_ROUTER else "writes"
        lines += ["", f"  {s.name} ({s.kind.value}, {s.delivery.value}): {s.why}",
                  f"    {s.writer} {verb} {s.record}; capacity {s.capacity}"]
        for reader in s.readers:
            mark = "*" if reader.process == s.system_of_record else ""
            lines.append(f"    -> {(reader.process + mark).ljust(width)} "
                         f"{('[' + reader.resume.value + ']').ljust(resume)} {reader.why}")
    lines += ["", "  * system of record; [how a reader resumes after a restart]"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(drawing())
