"""Fixtures for the ledger tests: real SQLite files in tmp_path and a report builder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ledgerkit import SYMBOLS, reports
from sqlalchemy import Engine

from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.store import LedgerStore


@pytest.fixture
def symbols() -> dict[int, tuple[str, str, str]]:
    return dict(SYMBOLS)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def config() -> LedgerConfig:
    return LedgerConfig()


@pytest.fixture
def engine(db_path: Path, config: LedgerConfig) -> Engine:
    engine = make_engine(db_path, synchronous=config.synchronous)
    init_db(engine, "paper", config)
    return engine


@pytest.fixture
def store(engine: Engine, config: LedgerConfig) -> LedgerStore:
    return LedgerStore(engine, SYMBOLS, config)


@pytest.fixture
def make_reports() -> Callable[..., np.ndarray]:
    """Build REPORT_DTYPE batches; scalars broadcast, FILLED reports fill fully at ``price``."""
    return reports
