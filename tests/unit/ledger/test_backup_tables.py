"""Every ledger table is in the incremental backups, or excluded on purpose with a reason.

The table list is derived from the models: these tests fail when a table is added without
saying how backups capture it, instead of the table silently dropping out of them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, Table

from pipeline.ledger.backup import capture
from pipeline.ledger.base import ModelBase


def test_every_table_of_the_models_is_captured_or_excluded_with_a_reason() -> None:
    kinds = capture.backup_kinds()
    assert set(kinds) == set(ModelBase.metadata.tables)
    captured = set(capture.COUNTED)
    for table in ModelBase.metadata.sorted_tables:
        if kinds[table.name] == "excluded":
            assert table.name not in captured
            assert table.info["backup_excluded_because"].strip()
        else:
            assert table.name in captured, f"{table.name} is not in the backups"


def test_an_increment_reads_every_captured_table_of_a_real_ledger(engine: Engine,
                                                                  db_path: Path) -> None:
    del engine  # the fixture created and migrated the database at db_path
    conn = capture.open_read_only(db_path)
    try:
        since = capture.watermarks(conn)
        tables, info = capture.increment(conn, since)
    finally:
        conn.close()
    expected = {name for name, kind in capture.backup_kinds().items() if kind != "excluded"}
    assert set(tables) == expected | {"alembic_version"}
    assert set(info["row_counts"]) == set(tables)
    real = sqlite3.connect(db_path)
    try:
        on_disk = {row[0] for row in real.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%'")}
    finally:
        real.close()
    assert on_disk == set(tables), "a table in the database is not in the models"


@pytest.mark.parametrize("info", [{}, {"backup": "excluded"},
                                  {"backup": "excluded", "backup_excluded_because": " "}])
def test_a_table_without_a_kind_or_a_reason_is_refused(info: dict[str, str]) -> None:
    table = Table("new_table_for_test", ModelBase.metadata,
                  Column("id", Integer, primary_key=True), info=info)
    try:
        with pytest.raises(RuntimeError, match="new_table_for_test"):
            capture.backup_kinds()
    finally:
        ModelBase.metadata.remove(table)


def test_an_excluded_table_with_a_reason_stays_out_of_the_backups() -> None:
    table = Table("rebuilt_for_test", ModelBase.metadata,
                  Column("id", Integer, primary_key=True),
                  info={"backup": "excluded",
                        "backup_excluded_because": "rebuilt from fills on start"})
    try:
        assert capture.backup_kinds()["rebuilt_for_test"] == "excluded"
    finally:
        ModelBase.metadata.remove(table)
