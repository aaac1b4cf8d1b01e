"""Schema migrations with alembic, run by the ledger itself at start-up.

The database records its revision in ``alembic_version`` (alembic's own table) and, for
people reading the file with the sqlite3 shell, in ``meta.schema_version``. At start-up the
ledger upgrades an older database to this code's head inside one transaction, and refuses
a database whose revision this code does not know (written by newer code: running old code
against it could misread money).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from pipeline.errors import OperationalError

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
BASELINE: Final = "0001"  # databases made by create_all before migrations existed


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config for the ledger's migrations, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this code's models correspond to."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise OperationalError(f"{MIGRATIONS_DIR}: no migrations found")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision stored in the database, or None for a database alembic never touched."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, database: str) -> tuple[str | None, str]:
    """Bring the schema to head on ``connection`` (inside the caller's transaction).

    Returns (revision before, revision after). Raises OperationalError for a revision this
    code does not know.
    """
    config = alembic_config(connection)
    script = ScriptDirectory.from_config(config)
    before = current_revision(connection)
    if before is None and inspect(connection).has_table("orders"):
        command.stamp(config, BASELINE)  # pre-migration database: schema equals the baseline
        before = BASELINE
    if before is not None and before not in {rev.revision for rev in script.walk_revisions()}:
        raise OperationalError(
            f"{database}: schema revision {before!r} is unknown to this code (head "
            f"{head_revision()!r}); it was written by a newer version: run that version"
        )
    command.upgrade(config, "head")
    return before, head_revision()
