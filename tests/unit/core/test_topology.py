"""The stream table: consistent in itself, true to what the processes open, and the source
of the README's architecture drawing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import topology
from pipeline.config import PipelineConfig, load_config
from pipeline.ports import InputPort, Ports
from pipeline.ring import RingWriter
from pipeline.runtime import Runtime
from pipeline.service import Service
from pipeline.topology import STREAMS, Delivery, Kind, RingSpecs

README = Path(__file__).resolve().parents[3] / "README.md"


def test_stream_names_are_unique_and_each_reader_is_declared_once() -> None:
    names = [s.name for s in STREAMS]
    assert len(names) == len(set(names))
    for declared in STREAMS:
        assert len(declared.reader_names) == len(set(declared.reader_names)), declared.name


def test_every_lossless_ring_has_a_system_of_record_and_a_backpressure_bound() -> None:
    for declared in topology.rings():
        assert declared.dtype is not None
        if declared.delivery is Delivery.LOSSLESS:
            assert declared.system_of_record == declared.readers[0].process
            assert declared.backpressure is not None
        else:
            assert declared.system_of_record is None


def test_ring_specs_come_from_the_table_and_the_config(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path), "rings": {"ticks_capacity": 1024}})
    specs = RingSpecs.from_config(config)
    assert specs.ticks.capacity == 1024
    assert specs.ticks.readers == ("strategy", "executor", "localnet")
    assert specs.reports.readers == ("ledger", "strategy")  # slot order: ledger first
    assert [s.name for s in specs.all()] == [
        f"{config.paths.ring_prefix}-{name}" for name in ("ticks", "intents", "reports")]
    assert not specs.ticks.lossless
    assert specs.intents.lossless
    assert specs.reports.lossless


class _Recorder:
    """Which rings each process opens, as reader or writer, through its real ports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.readers: dict[str, set[str]] = {}
        self.writers: dict[str, str] = {}
        real_reader, real_writer = Ports.reader, Ports.writer

        def reader(ports: Ports, name: str, **kwargs: Any) -> InputPort:
            self.readers.setdefault(name, set()).add(ports.process)
            return real_reader(ports, name, **kwargs)

        def writer(ports: Ports, name: str) -> RingWriter:
            assert name not in self.writers, f"{name} opened by two writers"
            self.writers[name] = ports.process
            return real_writer(ports, name)

        monkeypatch.setattr(Ports, "reader", reader)
        monkeypatch.setattr(Ports, "writer", writer)


def _services() -> dict[str, Callable[[Runtime], Service]]:
    from pipeline.executor.process import ExecutorService
    from pipeline.ingest.process import IngestService
    from pipeline.ledger.process import LedgerService
    from pipeline.strategy.process import StrategyService
    # The ledger first: it creates the trading state the others read.
    return {"ledger": LedgerService, "executor": ExecutorService,
            "strategy": StrategyService, "ingest": IngestService}


@pytest.fixture
def config(tmp_path: Path, shm_dir: Path) -> PipelineConfig:
    return load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "var"), "rings": {"shm_dir": str(shm_dir)}})


@pytest.fixture
def opened(config: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Recorder]:
    """Build every service (and the localnet's price reader) the way its process does."""
    from pipeline.localnet.prices import TickPrices

    recorder = _Recorder(monkeypatch)
    built: list[tuple[Runtime, Service]] = []
    prices = None
    try:
        for name, make in _services().items():
            runtime = Runtime.build(config, name, to_stderr=False)
            built.append((runtime, make(runtime)))
        ports = Ports(config, "localnet", run_id=built[0][0].run_id, log=built[0][0].log)
        prices = TickPrices(lambda: ports.reader("ticks"), {("SOL", "USDC"): 1})
        prices.price_of("SOL", "USDC")  # opens the port on the first question
        yield recorder
    finally:
        if prices is not None:
            prices.close()
        for runtime, service in reversed(built):
            service.close()
            runtime.close()


def test_each_ring_is_opened_by_exactly_its_declared_writer_and_readers(
        opened: _Recorder) -> None:
    for declared in topology.rings():
        assert opened.writers.get(declared.name) == declared.writer, declared.name
        assert opened.readers.get(declared.name) == set(declared.reader_names), declared.name


def test_streams_of_one_process_name_real_processes() -> None:
    known = {"ingest", "strategy", "executor", "ledger", "localnet", "launcher", "admin",
             topology.EACH}
    for declared in STREAMS:
        assert declared.writer in known, declared.name
        assert set(declared.reader_names) <= known, declared.name
        assert declared.kind is not Kind.RING or declared.writer != topology.EACH


def _readme_block() -> str:
    text = README.read_text()
    start = text.index("```\n", text.index("## Architecture\n")) + len("```\n")
    return text[start:text.index("```\n", start)]


def test_the_readme_drawing_is_the_generated_one() -> None:
    assert _readme_block() == topology.drawing() + "\n", (
        "README.md's architecture drawing differs from pipeline/topology.py's table: "
        "regenerate it with `python -m pipeline.topology` and paste the output into the "
        "code block under '## Architecture'")
