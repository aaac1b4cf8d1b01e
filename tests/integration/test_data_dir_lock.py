"""One pipeline per data dir, children that end with `pipeline run`, private files and the
reason a child failed: real processes, real rings, real SQLite."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import psutil
from harness import (
    assert_ledger_consistent,
    count,
    final_counters,
    kill_leftovers,
    pipeline_cmd,
    pipeline_env,
    run_pipeline,
    start_process,
)
from testkit import eventually

FILLS = "SELECT count(*) FROM fills"


def _start_run(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(pipeline_cmd("run", "--data-dir", str(data_dir)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trading(database: Path) -> None:
    """All four processes are up (the ingest starts last) once fills reach the ledger."""
    eventually(lambda: count(database, FILLS) > 0, timeout_s=90, interval_s=0.2,
               message="fills in the ledger")


def _refused(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pipeline_cmd(*args), env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _inodes(*directories: Path) -> dict[str, int]:
    return {str(p): p.stat().st_ino for d in directories for p in d.iterdir()}


def _child_pid(launcher: int, name: str) -> int:
    return next(p.pid for p in psutil.Process(launcher).children() if name in p.cmdline()[3:4])


def test_a_second_run_or_ledger_is_refused_and_the_first_run_books_every_fill(
        tmp_path: Path, shm_dir: Path) -> None:
    data_dir = tmp_path.resolve() / "var"
    database = data_dir / "ledger-paper.sqlite"
    env = pipeline_env(shm_dir)
    first = _start_run(data_dir, env)
    try:
        _trading(database)
        before = _inodes(shm_dir, data_dir / "run")

        second = _refused("run", "--data-dir", str(data_dir), "--duration", "2", env=env)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"data dir {data_dir} is in use by pid {first.pid}" in second.stderr

        ledger = _refused("ledger", "--data-dir", str(data_dir), env=env)
        assert ledger.returncode == 2, ledger.stderr
        assert f"is in use by pid {_child_pid(first.pid, 'ledger')} (ledger.lock is locked)" \
            in ledger.stderr

        # Nothing of the first run was unlinked or rebound, and it keeps trading.
        assert _inodes(shm_dir, data_dir / "run") == before
        fills = count(database, FILLS)
        eventually(lambda: count(database, FILLS) > fills, timeout_s=30, interval_s=0.2,
                   message="the first run still books fills")
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=90)
    finally:
        kill_leftovers([first])
    assert first.returncode == 0, err
    executor = final_counters(data_dir / "logs" / "executor.log")
    assert executor["fills"] == count(database, FILLS)
    assert_ledger_consistent(database)
    assert list(shm_dir.iterdir()) == []


def test_a_second_standalone_ledger_is_refused_and_the_first_keeps_running(
        tmp_path: Path, shm_dir: Path) -> None:
    # What supervisord could do: two programs of one name on one data dir.
    data_dir = tmp_path.resolve() / "var"
    env = pipeline_env(shm_dir)
    first = start_process("ledger", "--data-dir", str(data_dir), env=env, quiet=True)
    try:
        eventually((data_dir / "run" / "ledger.ctl").exists, timeout_s=60,
                   message="the first ledger bound its control socket")
        second = _refused("ledger", "--data-dir", str(data_dir), env=env)
        assert second.returncode == 2, second.stderr
        assert f"data dir {data_dir} is in use by pid {first.pid}" in second.stderr
        # A run cannot start beside it either: its ledger would share the database.
        run = _refused("run", "--data-dir", str(data_dir), "--duration", "2", env=env)
        assert run.returncode == 2, run.stdout + run.stderr
        assert f"is in use by pid {first.pid} (ledger.lock is locked)" in run.stderr
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
    finally:
        kill_leftovers([first])


def test_killing_the_launcher_takes_its_children_down(tmp_path: Path, shm_dir: Path) -> None:
    data_dir = tmp_path.resolve() / "var"
    database = data_dir / "ledger-paper.sqlite"
    run = _start_run(data_dir, pipeline_env(shm_dir))
    children: list[psutil.Process] = []
    try:
        _trading(database)
        children = psutil.Process(run.pid).children()
        assert len(children) == 4, [c.cmdline() for c in children]
        run.kill()
        run.communicate(timeout=30)

        def all_gone() -> bool:
            return not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                           for c in children)
        eventually(all_gone, timeout_s=30, interval_s=0.1, message="no orphan left")
        fills = count(database, FILLS)
        # Each child drained on its SIGTERM and said so; nothing books fills any more.
        logs = data_dir / "logs"
        for name in ("ledger", "executor", "strategy", "ingest"):
            assert final_counters(logs / f"{name}.log")["state"] == "stopped", name
        assert count(database, FILLS) == fills
    finally:
        for child in children:
            if child.is_running():
                child.kill()
        kill_leftovers([run])


def test_the_run_prints_why_a_child_failed(tmp_path: Path, shm_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = pipeline_env(shm_dir, PIPELINE__METRICS__PORTS=(
            f"{{ ingest = 0, strategy = 0, executor = 0, ledger = {port} }}"))
        result = run_pipeline(tmp_path / "var", env, duration_s=5)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"ledger exited with code 2 at start-up: cannot start: cannot serve metrics on "
            f"127.0.0.1:{port}") in result.stderr
    assert "Address already in use" in result.stderr


def test_the_data_dir_and_what_the_run_writes_are_for_the_owner_only(
        tmp_path: Path, shm_dir: Path) -> None:
    data_dir = tmp_path.resolve() / "var"
    database = data_dir / "ledger-paper.sqlite"
    run = _start_run(data_dir, pipeline_env(shm_dir))
    try:
        _trading(database)  # the ledger has its database open in WAL mode: -wal and -shm exist
        files = [database, database.with_name(database.name + "-wal"),
                 database.with_name(database.name + "-shm"),
                 *(data_dir / "logs").iterdir(), *(data_dir / "run").glob("*.lock")]
        modes = {str(f): f.stat().st_mode & 0o777 for f in files}
        assert set(modes.values()) == {0o600}, modes
        for directory in (data_dir, data_dir / "run", data_dir / "logs"):
            assert directory.stat().st_mode & 0o777 == 0o700, directory
        run.send_signal(signal.SIGTERM)
        _out, err = run.communicate(timeout=90)
    finally:
        kill_leftovers([run])
    assert run.returncode == 0, err
