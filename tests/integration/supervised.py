"""A real supervisord running deploy/supervisor/supervisord.conf in a temporary directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import pipeline_env

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONF = DEPLOY / "supervisor" / "supervisord.conf"
PROGRAMS = ("ledger", "executor", "strategy", "ingest")
BIN = Path(sys.executable).parent


@dataclass
class Supervised:
    env: dict[str, str]
    data_dir: Path
    config: Path
    daemon: subprocess.Popen[bytes]

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(CONF), *args], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)

    def states(self) -> dict[str, str]:
        """program -> supervisor state, e.g. {"ledger": "RUNNING", ...}."""
        out = self.ctl("status").stdout
        states = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].startswith("pipeline:"):
                states[fields[0].removeprefix("pipeline:")] = fields[1]
        return states

    def pid(self, program: str) -> int:
        return int(self.ctl("pid", f"pipeline:{program}").stdout.strip() or 0)


@contextmanager
def supervised(tmp_path: Path, shm_dir: Path, config_text: str, *, drop: tuple[str, ...] = (),
               **env: str) -> Iterator[Supervised]:
    """Start supervisord in the foreground with its own short socket directory; stop it after.

    ``drop`` removes variables of the default test environment, so the file decides them.
    """
    data_dir = tmp_path / "var"
    (data_dir / "logs").mkdir(parents=True)
    config = tmp_path / "pipeline.toml"
    config.write_text(config_text)
    short_dir = Path(tempfile.mkdtemp(prefix="sv", dir="/tmp"))
    full_env = pipeline_env(shm_dir, **env)
    for name in drop:
        full_env.pop(name, None)
    full_env.update(PIPELINE_BIN=str(BIN / "pipeline"), PIPELINE_CONFIG=str(config),
                    PIPELINE_DATA_DIR=str(data_dir), SUPERVISOR_DIR=str(short_dir),
                    PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    daemon = subprocess.Popen([str(BIN / "supervisord"), "-n", "-c", str(CONF)], env=full_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield Supervised(full_env, data_dir, config, daemon)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)  # stops the group in reverse priority
            try:
                daemon.wait(timeout=90)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(short_dir, ignore_errors=True)
