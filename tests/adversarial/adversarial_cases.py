"""The table of hostile and careless inputs (issue 13), each run as a real process.

One row per case: a name, a setup that prepares the files and returns the ``pipeline``
arguments, the expected exit code and words, and what must survive. Cases that need a
running pipeline (``LIVE_CASES``, marked ``shared``) talk to one ledger started for them,
one after another; the others start nothing that outlives them and run side by side.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from adversary import EXIT_REFUSED, Case, Check, World, command
from pyarrow import feather
from solders.keypair import Keypair
from testkit import eventually

from pipeline import dirlock
from pipeline.config import load_config

CANDLE_HEADER = "open_time_ms,open,high,low,close,volume\n"
GOOD_ROW = [1_600_000_000_000, 1.0, 2.0, 1.0, 1.5, 10.0]
_HELD_LOCKS: list[dirlock.DirLock] = []  # held by this test process until it exits


# -- helpers for setups -------------------------------------------------------------------

def _write(world: World, name: str, content: str | bytes) -> Path:
    path = world.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unchanged(path_of: Callable[[World], Path]) -> tuple[Callable[[World], None], Check]:
    """A pair (remember, check): the file at ``path_of(world)`` must be byte-identical."""
    seen: dict[str, str] = {}

    def remember(world: World) -> None:
        seen["digest"] = _digest(path_of(world))

    def check(world: World) -> str | None:
        path = path_of(world)
        if not path.exists():
            return f"{path} is gone"
        return None if _digest(path) == seen.get("digest") else f"{path} changed"
    return remember, check


def _backtest(name: str, content: str | bytes, *extra: str) -> Callable[[World], list[str]]:
    def setup(world: World) -> list[str]:
        path = _write(world, name, content)
        return ["backtest", str(path), "--data-dir", str(world.path("bt")), *extra]
    return setup


def _json_rows(*rows: object) -> str:
    return json.dumps(list(rows))


def _feather(name: str, table: pa.Table) -> Callable[[World], list[str]]:
    def setup(world: World) -> list[str]:
        path = world.path(name)
        feather.write_feather(table, str(path))
        return ["backtest", str(path), "--data-dir", str(world.path("bt"))]
    return setup


def _candle_table(**columns: pa.Array) -> pa.Table:
    base = {"date": pa.array([datetime.datetime(2021, 1, 1)], pa.timestamp("ms", tz="UTC")),
            "open": pa.array([1.0]), "high": pa.array([2.0]), "low": pa.array([1.0]),
            "close": pa.array([1.5]), "volume": pa.array([1.0])}
    return pa.table(base | columns)


def _config(name: str, text: str | bytes, *argv: str) -> Callable[[World], list[str]]:
    def setup(world: World) -> list[str]:
        path = _write(world, name, text)
        return [*argv, "--config", str(path), "--data-dir", str(world.path(f"dd-{name}"))]
    return setup


def _keypair(world: World) -> Path:
    path = world.path("signer.json")
    if not path.exists():
        path.write_text(json.dumps(list(bytes(Keypair()))))
        path.chmod(0o600)
    return path


def _npz_empty(world: World) -> list[str]:
    path = world.path("empty.npz")
    np.savez(path)
    return ["backtest", str(path), "--data-dir", str(world.path("bt"))]


def _paths(world: World, data_dir: Path) -> tuple[Path, str]:
    """(shm_dir, ring prefix) the processes will use for ``data_dir``."""
    config = load_config(environ={}, overrides={"data_dir": str(data_dir),
                                                "rings": {"shm_dir": str(world.shm_dir)}})
    return world.shm_dir, config.paths.ring_prefix


def _plant(world: World, data_dir: Path, name: str, size: int) -> Path:
    """A file another user left where the pipeline expects its own (0666, not ours)."""
    shm_dir, prefix = _paths(world, data_dir)
    path = shm_dir / name.format(prefix=prefix)
    path.write_bytes(b"\0" * size)
    path.chmod(0o666)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    return path


# -- database cases ---------------------------------------------------------------------------

def _corrupt_page(world: World, data_dir: Path) -> Path:
    """A real ledger database with garbage over the root page of its fills table."""
    database = world.fresh_db(data_dir)
    conn = sqlite3.connect(database)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'fills'"
                            ).fetchone()[0]
    finally:
        conn.close()
    with database.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    return database


def _db_case(name: str, argv_head: Sequence[str], make: Callable[[World, Path], Path],
             says: str, file_name: str = "ledger-paper.sqlite") -> Case:
    data_dir_of: Callable[[World], Path] = lambda world: world.path(f"db-{name}")  # noqa: E731
    remember, check = _unchanged(lambda world: data_dir_of(world) / file_name)

    def setup(world: World) -> list[str]:
        make(world, data_dir_of(world))
        remember(world)
        return [*argv_head, "--data-dir", str(data_dir_of(world))]
    return Case(name, setup, says=says, keeps=check)


def _garbage_db(world: World, data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    database = data_dir / "ledger-paper.sqlite"
    database.write_bytes(b"this is not a database, just text someone saved here\n" * 100)
    return database


def _localnet_db(world: World, data_dir: Path) -> Path:
    """A paper database copied to where the localnet ledger keeps its own."""
    database = world.fresh_db(data_dir)
    return database.rename(data_dir / "ledger-localnet.sqlite")


# -- planted files and locks ------------------------------------------------------------------

def _planted_case(name: str, pattern: str, size: int, says: str) -> Case:
    data_dir_of: Callable[[World], Path] = lambda world: world.path(f"plant-{name}")  # noqa: E731
    planted: dict[str, Path] = {}

    def setup(world: World) -> list[str]:
        planted["path"] = _plant(world, data_dir_of(world), pattern, size)
        return ["ledger", "--data-dir", str(data_dir_of(world))]

    def check(world: World) -> str | None:
        path = planted["path"]
        return None if path.exists() and path.stat().st_size == size else \
            f"the planted {path.name} was touched"
    return Case(name, setup, says=says, keeps=check)


def _locked(world: World) -> list[str]:
    data_dir = world.path("locked")
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True)
    _HELD_LOCKS.append(dirlock.acquire(run_dir, "ledger"))
    return ["ledger", "--data-dir", str(data_dir)]


def _outside_untouched(world: World) -> str | None:
    strays = [p for p in (world.root / "x.key", world.root / "x.key_secret",
                          world.root.parent / "x.key") if p.exists()]
    return f"wrote {strays}" if strays else None


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _no_access(path: Path) -> Path:
    path.chmod(0)
    return path


def _read_only(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    return path


def _replay_npz(world: World) -> list[str]:
    replay = world.path("replay-empty.npz")
    np.savez(replay)
    config = _write(world, "replay-empty.toml", f'[ingest]\nreplay_path = "{replay}"\n')
    return ["ingest", "--config", str(config), "--data-dir", str(world.path("replay-dd"))]


# -- the table --------------------------------------------------------------------------------

CASES: tuple[Case, ...] = (
    # Config files and values.
    Case("config_not_utf8", _config("latin1.toml", b'env = "paper" # \xe9t\xe9\n', "check"),
         says="not UTF-8"),
    Case("config_is_a_directory",
         lambda w: ["check", "--config", str(_mkdir(w.path("confdir")))],
         says="cannot read: Is a directory"),
    Case("config_unreadable", lambda w: ["check", "--config", str(_no_access(
        _write(w, "secret.toml", 'env = "paper"\n')))],
         says="cannot read: Permission denied", unprivileged=True),
    Case("config_nested_100k_deep",
         _config("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n", "check"),
         says="nested too deeply"),
    Case("config_invalid_toml", _config("broken.toml", "[run\nx = 1\n", "check"),
         says="invalid TOML"),
    Case("config_unknown_key", _config("typo.toml", "[run]\nstop_timeout = 5\n", "check"),
         says="unknown key"),
    Case("config_stop_timeout_negative",
         _config("stop.toml", "[run]\nstop_timeout_s = -1\n", "run"),
         says="run.stop_timeout_s = -1.0"),
    Case("config_env_override_nan", lambda w: ["run", "--data-dir", str(w.path("envnan"))],
         env={"PIPELINE__RUN__START_TIMEOUT_S": "nan"}, says="run.start_timeout_s"),
    Case("config_tcp_control_without_curve",
         _config("tcp.toml", '[control]\ntransport = "tcp"\n', "ledger"),
         says="control.transport = \"tcp\" requires control.curve = true"),
    Case("run_duration_nan", lambda w: ["run", "--duration", "nan"],
         says="argument --duration: 'nan'"),
    Case("run_duration_inf", lambda w: ["run", "--duration", "inf"],
         says="argument --duration: 'inf'"),
    # Data directories.
    Case("data_dir_is_a_file_ledger",
         lambda w: ["ledger", "--data-dir", str(_write(w, "plainfile", "x"))],
         says="Not a directory"),
    Case("data_dir_is_a_file_run",
         lambda w: ["run", "--data-dir", str(_write(w, "plainfile2", "x"))],
         says="Not a directory"),
    Case("data_dir_read_only_ledger",
         lambda w: ["ledger", "--data-dir", str(_read_only(w.path("rodir")))],
         says="Permission denied", unprivileged=True),
    Case("data_dir_read_only_run",
         lambda w: ["run", "--data-dir", str(_read_only(w.path("rodir2")))],
         says="Permission denied", unprivileged=True),
    Case("data_dir_too_long_for_ipc_ledger",
         lambda w: ["ledger", "--data-dir", str(w.path("d" * 110))],
         says="too long for the ipc control sockets"),
    Case("data_dir_too_long_for_ipc_run",
         lambda w: ["run", "--data-dir", str(w.path("e" * 110)), "--duration", "5"],
         says="too long for the ipc control sockets"),
    Case("data_dir_in_use", _locked, says="is in use by pid"),
    # Candle and trade files.
    Case("npz_without_arrays", _npz_empty, says="missing arrays"),
    Case("npz_zero_bytes", _backtest("zero.npz", b""), says="not a readable npz file"),
    Case("json_100k_deep", _backtest("deep.json", "[" * 100_000 + "]" * 100_000),
         says="nested too deeply"),
    Case("json_integer_above_2_64", _backtest("big.json", _json_rows(
        [1_600_000_000_000, 2**65, 2.0, 1.0, 1.5, 10.0])), says="row 1: expected 6 numbers"),
    Case("json_integer_5000_digits", _backtest("digits.json", "[[" + "9" * 5000 + "]]"),
         says="not readable JSON"),
    Case("json_timestamp_overflows_ns", _backtest("late.json", _json_rows(
        [2**53 - 1, 1.0, 2.0, 1.0, 1.5, 10.0])), says="open_time_ms is outside"),
    Case("json_timestamp_negative", _backtest("early.json", _json_rows(
        [-60_000, 1.0, 2.0, 1.0, 1.5, 10.0])), says="open_time_ms is outside"),
    Case("csv_timestamp_overflows", _backtest(
        "late.csv", CANDLE_HEADER + f"{10**30},1,2,1,1.5,10\n"), says="row 2: open_time_ms"),
    Case("csv_not_utf8", _backtest("latin1.csv", CANDLE_HEADER.encode() + b"\xe9,1,2,1,1,1\n"),
         says="not readable CSV"),
    Case("trades_csv_timestamp_overflows", _backtest(
        "trades.csv", f"timestamp,price,amount\n{2**62},1.0,1.0\n"), says="row 2: timestamp"),
    Case("feather_text_price", _feather("text.feather", _candle_table(
        open=pa.array(["abc"]))), says="open has type string, expected numbers"),
    Case("feather_date_after_2262", _feather("late.feather", _candle_table(
        date=pa.array([datetime.datetime(3000, 1, 1)], pa.timestamp("ms", tz="UTC")))),
         says="date out of range"),
    Case("backtest_out_is_a_file", lambda w: [
        "backtest", str(_write(w, "ok.json", _json_rows(GOOD_ROW))), "--out",
        str(_write(w, "outfile", "x"))], says="--out"),
    # Replay files and databases at start-up, and in `pipeline check`.
    Case("replay_missing_ingest",
         _config("replay.toml", '[ingest]\nreplay_path = "/nonexistent/ticks.npz"\n', "ingest"),
         says="check replay failed"),
    Case("replay_missing_check",
         _config("replay2.toml", '[ingest]\nreplay_path = "/nonexistent/ticks.npz"\n',
                 "check"), says="ingest.replay_path /nonexistent/ticks.npz"),
    Case("replay_empty_npz_ingest", _replay_npz, says="missing arrays"),
    _db_case("database_page_corrupted_ledger", ["ledger"], _corrupt_page,
             "check database_pages failed"),
    _db_case("database_page_corrupted_check", ["check"], _corrupt_page,
             "database disk image is malformed"),
    _db_case("database_not_sqlite_ledger", ["ledger"], _garbage_db, "not a database"),
    _db_case("database_not_sqlite_check", ["check"], _garbage_db, "not a database"),
    _db_case("database_other_environment", ["ledger", "--env", "localnet"],
             _localnet_db, "belongs to environment", "ledger-localnet.sqlite"),
    # Files another local user planted where the pipeline keeps its own.
    _planted_case("planted_reports_ring", "{prefix}-reports", 0, "cannot start"),
    _planted_case("planted_kill_flag", "{prefix}-killswitch", 4096, "cannot start"),
    # Operator tools.
    Case("sign_expires_in_nan", lambda w: [
        "admin", "sign", "--keypair", str(_keypair(w)), "--disable", "--expires-in", "nan"],
         says="argument --expires-in: 'nan'"),
    Case("sign_expires_in_inf", lambda w: [
        "admin", "sign", "--keypair", str(_keypair(w)), "--disable", "--expires-in", "inf"],
         says="argument --expires-in: 'inf'"),
    Case("sign_output_is_a_directory", lambda w: [
        "admin", "sign", "--keypair", str(_keypair(w)), "--disable", "-o",
        str(_mkdir(w.path("sigdir")))], says="--output"),
    Case("fills_limit_1e20", lambda w: [
        "admin", "--data-dir", str(w.path("nodb")), "fills", "--limit", "1e20"],
         says="argument --limit: '1e20'"),
    Case("fills_limit_10_to_20", lambda w: [
        "admin", "--data-dir", str(w.path("nodb")), "fills", "--limit", str(10**20)],
         says="must be from 1 to"),
    Case("admin_timeout_nan", lambda w: ["admin", "--timeout", "nan", "ping"],
         says="argument --timeout: 'nan'"),
    Case("keygen_name_escapes_dir", lambda w: [
        "admin", "keygen", "--dir", str(w.path("keys")), "--name", "../../x"],
         says="must be a plain file name", keeps=_outside_untouched),
    Case("keygen_name_dot_dot", lambda w: [
        "admin", "keygen", "--dir", str(w.path("keys")), "--name", ".."],
         says="must be a plain file name"),
)


# -- a running ledger, for refused requests ---------------------------------------------------

class LiveLedger:
    """One ``pipeline ledger`` run without root's permission bypass, so that a config made
    unreadable is unreadable to it too. Started by the first case that needs it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.data_dir = world.path("live")
        self.config = _write(world, "live.toml", "[ledger]\ncommits_per_s = 200\n")
        self.popen = subprocess.Popen(
            command(Case("live", lambda _w: (), unprivileged=True),
                    ["ledger", "--config", str(self.config), "--data-dir",
                     str(self.data_dir)]),
            env=world.env, cwd=world.root, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            eventually(lambda: self.popen.poll() is not None or self._answers(), timeout_s=60,
                       interval_s=0.1, message="the live ledger answers ping")
        except AssertionError:
            self.stop()
            raise
        assert self.popen.poll() is None, f"the live ledger did not start: {self.stop()}"

    def _answers(self) -> bool:
        return subprocess.run(command(Case("ping", lambda _w: ()), self.admin("ping", "ledger")),
                              env=self.world.env, capture_output=True, timeout=60,
                              check=False).returncode == 0

    def admin(self, *argv: str) -> list[str]:
        """Without --config: the admin tool must not depend on the file the cases break."""
        return ["admin", "--data-dir", str(self.data_dir), *argv]

    def metric(self, name: str) -> float:
        port = int((self.data_dir / "run" / "ledger.metrics-port").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith((name + "{", name + " ")))

    def stop(self) -> tuple[int, str]:
        """SIGTERM; (exit code, stderr). A ledger that refused requests still drains to 0."""
        self.popen.terminate()
        try:
            _out, err = self.popen.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            _out, err = self.popen.communicate()
        return self.popen.returncode, err.decode(errors="replace")


_LIVE: dict[Path, LiveLedger] = {}


def live(world: World) -> LiveLedger:
    if world.root not in _LIVE:
        _LIVE[world.root] = LiveLedger(world)
    return _LIVE[world.root]


def stop_live(world: World) -> tuple[int, str] | None:
    ledger = _LIVE.pop(world.root, None)
    return ledger.stop() if ledger is not None else None


def _still_serving(world: World) -> str | None:
    """The ledger outlived the refusal, counted it, and its database still opens."""
    ledger = live(world)
    if ledger.popen.poll() is not None:
        return f"the ledger exited with code {ledger.popen.returncode}"
    return None


def _refusals_counted(world: World) -> str | None:
    lost = _still_serving(world)
    if lost is None and live(world).metric("pipeline_config_reload_refused_total") < 1:
        return "the refused reload was not counted"
    return lost


def _config_swapped_for_directory(world: World) -> list[str]:
    ledger = live(world)
    ledger.config.unlink()
    ledger.config.mkdir()
    os.kill(ledger.popen.pid, signal.SIGHUP)  # the signal path must survive it too
    return ledger.admin("reload", "ledger")


def _config_made_unreadable(world: World) -> list[str]:
    ledger = live(world)
    if ledger.config.is_dir():
        ledger.config.rmdir()
    ledger.config.write_text("")
    ledger.config.chmod(0)
    os.kill(ledger.popen.pid, signal.SIGHUP)
    return ledger.admin("reload", "ledger")


def _enable_with_a_stranger_s_signature(world: World) -> list[str]:
    signature = world.path("stranger.sig")
    signed = subprocess.run(command(Case("sign", lambda _w: ()), [
        "admin", "sign", "--keypair", str(_keypair(world)), "--enable", "-o",
        str(signature)]), env=world.env, capture_output=True, timeout=60, check=False)
    assert signed.returncode == 0, signed.stderr
    return live(world).admin("trade-enable", str(signature))


LIVE_CASES: tuple[Case, ...] = (
    Case("reload_config_is_a_directory", _config_swapped_for_directory,
         exit_code=EXIT_REFUSED, says="Is a directory", keeps=_refusals_counted, shared=True),
    Case("reload_config_unreadable", _config_made_unreadable, exit_code=EXIT_REFUSED,
         says="Permission denied", keeps=_refusals_counted, shared=True),
    Case("trade_enable_unknown_signer", _enable_with_a_stranger_s_signature,
         exit_code=EXIT_REFUSED, says="refused", keeps=_still_serving, shared=True),
)
ALL_CASES: tuple[Case, ...] = CASES + LIVE_CASES
