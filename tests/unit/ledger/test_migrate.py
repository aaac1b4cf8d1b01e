"""Migrations: the migrated schema is the models' schema, versions are recorded and checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, text

from pipeline.errors import OperationalError
from pipeline.ledger.base import ModelBase
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.migrate import current_revision, head_revision
from pipeline.ledger.models import AuditLog, Meta
from pipeline.ledger.schema import SCHEMA_VERSION


def test_schema_version_is_the_alembic_head() -> None:
    assert head_revision() == SCHEMA_VERSION


def test_migrated_schema_equals_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), ModelBase.metadata)
        assert diffs == []
        assert current_revision(conn) == SCHEMA_VERSION
        assert conn.scalar(select(Meta.value).where(Meta.key == "schema_version")) == \
            SCHEMA_VERSION


def test_pre_migration_database_is_adopted(db_path: Path, config: LedgerConfig) -> None:
    """A database made by create_all before alembic is stamped at the baseline, not rebuilt."""
    engine = make_engine(db_path)
    with engine.begin() as conn:
        ModelBase.metadata.create_all(conn)
        conn.execute(text("INSERT INTO meta VALUES ('environment', 'paper'), "
                          "('schema_version', '1')"))
    assert init_db(engine, "paper", config) is False
    with engine.connect() as conn:
        assert current_revision(conn) == SCHEMA_VERSION
        assert conn.scalar(select(Meta.value).where(Meta.key == "schema_version")) == \
            SCHEMA_VERSION
        actions = conn.scalars(select(AuditLog.action)).all()
    assert actions == ["ledger.migrate"]


def test_newer_revision_is_refused(engine: Engine, config: LedgerConfig) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(OperationalError, match="'9999' is unknown to this code"):
        init_db(engine, "paper", config)


def test_failed_start_leaves_the_file_untouched(db_path: Path, config: LedgerConfig) -> None:
    """Migration and seeding are one transaction: an environment mismatch changes nothing."""
    engine = make_engine(db_path)
    init_db(engine, "paper", config)
    with pytest.raises(OperationalError, match="belongs to environment"):
        init_db(engine, "devnet", config)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit_log")) == 1
