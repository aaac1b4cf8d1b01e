"""Ports: rings opened as the topology declares them, and readers that follow a writer
across its orderly restart according to their resume policy."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import PipelineConfig, load_config
from pipeline.ports import Ports
from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, TICK_DTYPE
from pipeline.ring import RingReader, RingWriter
from pipeline.topology import Resume

LOG = logging.getLogger("test.ports")


@pytest.fixture
def config(tmp_path: Path, shm_dir: Path) -> PipelineConfig:
    return load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path), "rings": {"shm_dir": str(shm_dir)}})


def ports_of(config: PipelineConfig) -> Callable[[str], Ports]:
    run_id = uuid.uuid4()
    return lambda process: Ports(config, process, run_id=run_id, log=LOG)


def records(dtype: np.dtype[np.void], first: int, count: int) -> np.ndarray:
    batch = np.zeros(count, dtype=dtype)
    batch["seq" if "seq" in (dtype.names or ()) else "client_order_id"] = np.arange(
        first, first + count)
    return batch


def test_a_process_opens_only_what_the_table_gives_it(config: PipelineConfig) -> None:
    ports = ports_of(config)
    with pytest.raises(ValueError, match="strategy is not the writer of ticks"):
        ports("strategy").writer("ticks")
    with pytest.raises(KeyError, match="'ledger' is not a declared reader of ticks"):
        ports("ledger").reader("ticks")
    with pytest.raises(KeyError, match="no stream 'quotes'"):
        ports("ingest").writer("quotes")


def test_the_writer_gets_the_back_pressure_bound_of_its_ring(config: PipelineConfig) -> None:
    writer = ports_of(config)("strategy").writer("intents")
    try:
        assert writer.backpressure_timeout_s == config.rings.intents_backpressure_ms / 1000
    finally:
        writer.close()


def test_resume_hooks_are_required_exactly_where_the_reader_positions_itself(
        config: PipelineConfig) -> None:
    ports = ports_of(config)
    with pytest.raises(ValueError, match="committed cursor: give the port a resume hook"):
        ports("ledger").reader("reports")
    with pytest.raises(ValueError, match="ledger snapshot: give the port a resume hook"):
        ports("strategy").reader("reports")
    with pytest.raises(ValueError, match="a resume hook would contradict it"):
        ports("executor").reader("intents", resume=lambda _reader: None)


def test_own_cursor_reader_follows_a_restarted_writer_once_drained(
        config: PipelineConfig) -> None:
    ports = ports_of(config)
    writer = ports("ingest").writer("ticks")
    ticks = ports("strategy").reader("ticks")
    assert ticks.policy is Resume.OWN_CURSOR
    try:
        writer.write(records(TICK_DTYPE, 0, 3))
        assert ticks.read(1)["seq"].tolist() == [0]
        writer.close()  # orderly: the segment is marked closed and unlinked
        assert ticks.closed
        assert not ticks.follow()  # two records are still unread in the old segment
        assert ticks.read(10)["seq"].tolist() == [1, 2]
        writer = ports("ingest").writer("ticks")  # the restarted writer's new segment
        writer.write(records(TICK_DTYPE, 100, 2))
        old = ticks.instance_id
        assert ticks.follow()
        assert ticks.instance_id != old  # the same port, on the new segment
        assert not ticks.closed
        assert ticks.read.__func__ is RingReader.read  # type: ignore[attr-defined]
        assert ticks.read(10)["seq"].tolist() == [100, 101]
        assert not ticks.follow()  # nothing to do while the writer lives
    finally:
        ticks.close()
        writer.close()


def test_the_executor_learns_that_its_intents_ring_is_new(config: PipelineConfig) -> None:
    """follow() says True so the executor can reset what it derived from the old ring."""
    ports = ports_of(config)
    writer = ports("strategy").writer("intents")
    intents = ports("executor").reader("intents")
    try:
        writer.write(records(INTENT_DTYPE, 1, 2))
        intents.advance(len(intents.peek(10)))
        writer.close()
        writer = ports("strategy").writer("intents")
        assert intents.follow()
        assert intents.cursor == 0
        assert intents.available() == 0
    finally:
        intents.close()
        writer.close()


@pytest.mark.parametrize(("process", "policy"), [("ledger", Resume.COMMITTED_CURSOR),
                                                  ("strategy", Resume.LEDGER_SNAPSHOT)])
def test_a_self_positioning_reader_seeks_on_every_attach(
        config: PipelineConfig, process: str, policy: Resume) -> None:
    """The hook runs on the first attach and on each re-attach, before any read."""
    ports = ports_of(config)
    other = "strategy" if process == "ledger" else "ledger"
    writer = ports("executor").writer("reports")
    writer.write(records(REPORT_DTYPE, 1, 5))
    attached: list[RingReader] = []

    def resume(reader: RingReader) -> None:  # e.g. the cursor committed with the rows
        attached.append(reader)
        reader.seek(min(3, reader.write_seq))

    port = ports(process).reader("reports", resume=resume)
    peer = ports(other).reader("reports", resume=lambda reader: reader.seek(reader.write_seq))
    try:
        assert port.policy is policy
        assert attached == [port]
        assert port.read(10)["client_order_id"].tolist() == [4, 5]
        writer.close()
        writer = ports("executor").writer("reports")
        writer.write(records(REPORT_DTYPE, 10, 4))
        assert port.follow()
        assert attached == [port, port]
        assert port.read(10)["client_order_id"].tolist() == [13]
    finally:
        port.close()
        peer.close()
        writer.close()


def test_a_crashed_writer_is_not_followed(config: PipelineConfig) -> None:
    """A writer that dies without closing leaves its segment: the restarted one reuses it."""
    ports = ports_of(config)
    writer = ports("ingest").writer("ticks")
    ticks = ports("executor").reader("ticks")
    try:
        writer.write(records(TICK_DTYPE, 0, 2))
        restarted = RingWriter(writer.spec, env=config.env, run_id=uuid.uuid4(),
                               shm_dir=Path(config.rings.shm_dir))
        restarted.write(records(TICK_DTYPE, 2, 1))
        assert not ticks.follow()
        assert ticks.read(10)["seq"].tolist() == [0, 1, 2]
        restarted.close()
    finally:
        ticks.close()
        writer.close()
