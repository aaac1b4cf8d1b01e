"""Nonces of accepted kill-switch messages, so a signed message can be used only once.

SQLite runs the frozen SQL text; PostgreSQL the same table from SQLAlchemy types and the
trigger through 0001's ``ledger_refuse`` (plus TRUNCATE, which skips row triggers there).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()
    else:
        raise NotImplementedError(f"ledger migrations run on sqlite and postgresql, not {dialect}")


def _upgrade_sqlite() -> None:
    op.execute("""CREATE TABLE IF NOT EXISTS kill_switch_nonces (
        nonce VARCHAR(64) NOT NULL, expires_at DATETIME NOT NULL, used_at DATETIME NOT NULL,
        PRIMARY KEY (nonce))""")
    # IF NOT EXISTS: a pre-alembic database adopted at 0001 may have it from create_all.
    # Forgetting a nonce would make its signed message replayable.
    op.execute("CREATE TRIGGER IF NOT EXISTS kill_switch_nonces_no_delete "
               "BEFORE DELETE ON kill_switch_nonces BEGIN SELECT RAISE(ABORT, "
               "'kill_switch_nonces is history: DELETE is not allowed'); END")


def _upgrade_postgresql() -> None:
    # No IF NOT EXISTS: PostgreSQL databases are only ever made by these migrations.
    op.create_table(
        "kill_switch_nonces", sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=False))
    for event, each in (("DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
        op.execute(f"CREATE TRIGGER kill_switch_nonces_no_{event.lower()} BEFORE {event} "
                   f"ON kill_switch_nonces FOR EACH {each} EXECUTE FUNCTION ledger_refuse("
                   f"'kill_switch_nonces is history: {event} is not allowed')")


def downgrade() -> None:
    raise NotImplementedError("the ledger is history: migrations only go forward")
