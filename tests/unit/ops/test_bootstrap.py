"""Bootstrap checks against real files, a real SQLite file, real rings and a local SNTP server."""

from __future__ import annotations

import socket
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import bootstrap, sntp
from pipeline.cli import main
from pipeline.config import PipelineConfig, load_config
from pipeline.ledger.schema import SCHEMA_VERSION
from pipeline.ring import RingWriter
from pipeline.topology import RingSpecs


def _config(tmp_path: Path, shm_dir: Path, **sections: object) -> PipelineConfig:
    overrides: dict[str, object] = {"data_dir": str(tmp_path / "var"),
                                    "rings": {"shm_dir": str(shm_dir)},
                                    "clock": {"servers": []},  # never the internet
                                    **sections}
    return load_config(environ={}, overrides=overrides)


def _by_name(results: list[bootstrap.CheckResult]) -> dict[str, bootstrap.CheckResult]:
    return {r.name: r for r in results}


@contextmanager
def sntp_server(offset_s: float, *, echo: bool = True) -> Iterator[int]:
    """A real SNTP server on 127.0.0.1 whose clock is ``offset_s`` ahead of ours."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                request, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            now = sntp.to_ntp(time.time() + offset_s)
            reply = bytearray(48)
            reply[0] = (4 << 3) | 4  # version 4, server mode, leap 0
            reply[1] = 2  # stratum
            if echo:
                reply[24:32] = request[40:48]
            struct.pack_into("!IIII", reply, 32, *now, *now)
            sock.sendto(bytes(reply), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_defaults_pass_on_a_fresh_data_dir(tmp_path: Path, shm_dir: Path) -> None:
    results = _by_name(bootstrap.run_checks(_config(tmp_path, shm_dir)))
    assert [r.name for r in results.values() if r.failed] == []
    assert results["clock"].status == bootstrap.SKIP
    assert "not created yet" in results["database"].detail


@pytest.mark.parametrize(("offset_s", "on_failure", "status"), [
    (0.0, "disable_trading", "pass"), (1.5, "disable_trading", "fail"),
    (-1.5, "disable_trading", "fail"), (1.5, "auto", "warn")])  # paper: auto only warns
def test_clock_offset_is_measured_over_sntp(tmp_path: Path, shm_dir: Path, offset_s: float,
                                            on_failure: str, status: str) -> None:
    """The trading gate's threshold (clock.max_drift_s, 1 s) and the gate's verdict."""
    with sntp_server(offset_s) as port:
        config = _config(tmp_path, shm_dir, clock={"servers": [f"127.0.0.1:{port}"],
                                                   "on_failure": on_failure})
        result = bootstrap.check_clock(config)
    assert result.status == status, result.detail
    assert result.value == pytest.approx(offset_s, abs=0.02)


def test_an_answer_that_does_not_echo_our_request_is_refused() -> None:
    with sntp_server(0.0, echo=False) as port, pytest.raises(sntp.SntpError, match="echo"):
        sntp.query("127.0.0.1", port, timeout_s=1.0)


def test_no_ntp_answer_fails_the_clock_check(tmp_path: Path, shm_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        config = _config(tmp_path, shm_dir, clock={"servers": [f"127.0.0.1:{port}"],
                                                   "timeout_s": 0.2,
                                                   "on_failure": "disable_trading"})
        result = bootstrap.check_clock(config)
    assert result.failed
    assert "no NTP server answered" in result.detail


def test_a_key_file_readable_by_others_fails(tmp_path: Path, shm_dir: Path) -> None:
    key = tmp_path / "metrics-key.pem"
    key.write_text("not really a key")
    tls = {"host": "127.0.0.1", "certfile": str(tmp_path / "c.pem"), "keyfile": str(key),
           "client_cafile": str(tmp_path / "ca.pem")}
    config = _config(tmp_path, shm_dir, metrics=tls)
    key.chmod(0o644)
    failed = bootstrap.check_key_files(config)
    assert failed.failed
    assert "metrics.keyfile: mode 0644" in failed.detail
    key.chmod(0o600)
    assert bootstrap.check_key_files(config).status == bootstrap.PASS


def test_a_database_of_another_environment_fails(tmp_path: Path, shm_dir: Path) -> None:
    config = _config(tmp_path, shm_dir)
    config.paths.data_dir.mkdir(parents=True)
    conn = sqlite3.connect(config.paths.database)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('environment', 'mainnet'), ('schema_version', '1')")
    conn.commit()
    conn.close()
    result = bootstrap.check_database(config)
    assert result.failed
    assert "'mainnet'" in result.detail


@pytest.mark.parametrize(("schema", "passes"), [(SCHEMA_VERSION, True), ("0001", False),
                                                 ("9999", False)])
def test_the_database_schema_must_be_this_code_s(tmp_path: Path, shm_dir: Path, schema: str,
                                                 passes: bool) -> None:
    config = _config(tmp_path, shm_dir)
    config.paths.data_dir.mkdir(parents=True)
    conn = sqlite3.connect(config.paths.database)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('environment', 'paper'), ('schema_version', ?)",
                 (schema,))
    conn.commit()
    conn.close()
    result = bootstrap.check_database(config)
    assert result.failed is not passes, result.detail


def test_a_ring_of_another_environment_fails(tmp_path: Path, shm_dir: Path) -> None:
    config = _config(tmp_path, shm_dir)
    ticks = RingSpecs.from_config(config).ticks
    writer = RingWriter(ticks, env="devnet", run_id=uuid.uuid4(), shm_dir=shm_dir)
    try:
        result = bootstrap.check_rings(config)
    finally:
        writer.close()
    assert result.failed
    assert "belongs to env 'devnet'" in result.detail


def test_start_hook_sets_the_bootstrap_failed_gauge(tmp_path: Path, shm_dir: Path) -> None:
    import logging

    registry = CollectorRegistry()
    config = _config(tmp_path, shm_dir, check={"min_free_disk_mb": 1e12})  # no disk is that big
    bootstrap.report_at_start(config, registry, logging.getLogger("test"))
    assert registry.get_sample_value("pipeline_bootstrap_failed") == 1.0
    assert registry.get_sample_value("pipeline_bootstrap_check_failed",
                                     {"check": "data_dir"}) == 1.0


def test_pipeline_check_prints_a_table_and_exits_nonzero_on_failure(
        tmp_path: Path, shm_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE__RINGS__SHM_DIR", f'"{shm_dir}"')
    data_dir = str(tmp_path / "var")
    assert main(["check", "--data-dir", data_dir]) == 0
    assert ["rings", "pass"] in _rows(capsys.readouterr().out)
    monkeypatch.setenv("PIPELINE__CHECK__MIN_FREE_DISK_MB", "1e12")
    assert main(["check", "--data-dir", data_dir]) == 2
    assert ["data_dir", "fail"] in _rows(capsys.readouterr().out)


def _rows(table: str) -> list[list[str]]:
    """(check, result) of each row of ``pipeline check``'s table, whatever the widths."""
    return [line.split()[:2] for line in table.splitlines()]
