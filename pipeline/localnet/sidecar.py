"""``pipeline run --env localnet`` starts the localnet first and stops it last."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.lineage import spawn
from pipeline.localnet.manifest import NAME

_START_TIMEOUT_S = 20.0


class Sidecar:
    def __init__(self, config: PipelineConfig, config_path: Path | None, *,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self._config = config
        self._config_path = config_path
        self._pass_fds = pass_fds  # the run's data-dir lock, held while the localnet lives
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> str | None:
        """Start the localnet and wait for its manifest; an error text if it failed."""
        paths = self._config.paths
        (paths.run_dir / NAME).unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pipeline", "localnet", "--env", self._config.env,
               "--data-dir", str(paths.data_dir)]
        if self._config_path is not None:
            cmd += ["--config", str(self._config_path)]
        self._popen = spawn(cmd, os.environ, pass_fds=self._pass_fds)  # ends with the launcher
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not (paths.run_dir / NAME).exists():
            if self._popen.poll() is not None:
                return f"localnet exited with code {self._popen.returncode} at start-up"
            if time.monotonic() > deadline:
                return f"localnet did not start within {_START_TIMEOUT_S} s"
            time.sleep(0.05)
        return None

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self) -> int:
        if self._popen is None or self._popen.poll() is not None:
            return self._popen.returncode if self._popen else 0
        self._popen.send_signal(signal.SIGTERM)
        try:
            return self._popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            return self._popen.wait()
