"""A throwaway PostgreSQL server for tests: initdb into a temp dir, start, stop, delete.

The server listens only on 127.0.0.1 (a free port) with its unix socket in its own temp
dir, trusts nobody without the random password made for it, and runs with ``fsync=off``:
its data is thrown away. PostgreSQL refuses to run as root, so under root the binaries run
as the ``postgres`` user through ``runuser``, which owns the temp dir.

Missing binaries FAIL the tests rather than skip them: ``./dev.sh test`` (what CI runs)
installs Debian's ``postgresql`` package first, so a skip would hide a broken setup.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and the superuser's credentials."""

    port: int
    user: str
    password: str
    host: str = "127.0.0.1"

    def url(self, database: str) -> URL:
        """The SQLAlchemy URL (psycopg 3 driver) of ``database`` on this server."""
        return URL.create("postgresql+psycopg", username=self.user, password=self.password,
                          host=self.host, port=self.port, database=database)

    def create_database(self, name: str) -> URL:
        """Create an empty database ``name`` and return its URL."""
        with psycopg.connect(host=self.host, port=self.port, user=self.user,
                             password=self.password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def find_bin_dir(root: Path = PG_ROOT) -> Path | None:
    """The newest ``<root>/<version>/bin`` holding the server binaries, or None."""
    versions = sorted((p for p in root.glob("*/bin")
                       if all((p / name).is_file() for name in SERVER_BINARIES)),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_postgres(pg_root: Path = PG_ROOT) -> Iterator[PostgresServer]:
    """Start a fresh server; stop it and delete its files on exit, whatever happened."""
    bin_dir = find_bin_dir(pg_root)
    if bin_dir is None:
        pytest.fail(f"PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) not found in "
                    f"{pg_root}/<version>/bin: run the tests with ./dev.sh test, which "
                    "installs Debian's postgresql package", pytrace=False)
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no 'postgres' user to run PostgreSQL "
                        "as: install Debian's postgresql package (./dev.sh test does)",
                        pytrace=False)
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="pltest-pg-"))
    data = base / "data"
    server = PostgresServer(port=_free_port(), user="postgres",
                            password=secrets.token_hex(16))

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], cwd=base, capture_output=True, text=True,
                              timeout=START_TIMEOUT_S, check=False)
        if done.returncode != 0:
            log = base / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stdout}{done.stderr}{tail}")

    try:
        if owner is not None:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        pwfile = base / "pwfile"
        pwfile.write_text(server.password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", server.user,
            f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
            "--no-sync", "--no-instructions")
        options = (f"-c listen_addresses={server.host} -c port={server.port} "
                   f"-c unix_socket_directories={base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        # -w: pg_ctl polls until the server accepts connections, up to -t seconds.
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"),
            "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start")
        yield server
    finally:
        _stop(bin_dir, data, as_user, base)
        shutil.rmtree(base, ignore_errors=True)


def _stop(bin_dir: Path, data: Path, as_user: list[str], base: Path) -> None:
    """Stop the server if it runs; kill it by its own pid if pg_ctl cannot."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    done = subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                           "immediate", "-w", "-t", "30", "stop"], cwd=base,
                          capture_output=True, check=False)
    if done.returncode != 0 and pid_file.exists():
        pid = int(pid_file.read_text().splitlines()[0])
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test session."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> URL:
    """The URL of an empty database ``pltest`` on the session's server."""
    return postgres_server.create_database("pltest")
