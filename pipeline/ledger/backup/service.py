"""Wiring for the ledger process and the tools: keyring + S3 store + agent from config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.config import PipelineConfig
from pipeline.errors import OperationalError
from pipeline.ledger.backup.agent import BackupAgent
from pipeline.ledger.backup.crypto import Keyring
from pipeline.ledger.backup.objects import BackupStore


def make_store(config: PipelineConfig, client: Any = None,
               key_file: str | None = None) -> BackupStore:
    """The backup store for this environment; refuses a config without a bucket."""
    backup = config.ledger.backup
    if not backup.bucket:
        raise OperationalError("ledger.backup.bucket is not set: nowhere to back up to "
                               "or restore from")
    keyring = Keyring.load(key_file if key_file is not None else backup.key_file,
                           backup.key_env)
    return BackupStore(backup, config.env, keyring, client)


def start_agent(config: PipelineConfig, registry: CollectorRegistry,
                log: logging.Logger) -> BackupAgent | None:
    """The running backup agent, or None when ``ledger.backup.enabled`` is false."""
    if not config.ledger.backup.enabled:
        return None
    paths = config.paths
    agent = BackupAgent(config.ledger.backup, paths.database, config.env,
                        store=make_store(config), registry=registry, log=log,
                        work_dir=Path(paths.data_dir))
    agent.start()
    return agent
