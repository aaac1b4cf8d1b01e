"""Nonces of accepted kill-switch messages, so a signed message can be used only once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE IF NOT EXISTS kill_switch_nonces (
        nonce VARCHAR(64) NOT NULL, expires_at DATETIME NOT NULL, used_at DATETIME NOT NULL,
        PRIMARY KEY (nonce))""")
    # IF NOT EXISTS: a pre-alembic database adopted at 0001 may have it from create_all.
    # Forgetting a nonce would make its signed message replayable.
    op.execute("CREATE TRIGGER IF NOT EXISTS kill_switch_nonces_no_delete "
               "BEFORE DELETE ON kill_switch_nonces BEGIN SELECT RAISE(ABORT, "
               "'kill_switch_nonces is history: DELETE is not allowed'); END")


def downgrade() -> None:
    raise NotImplementedError("the ledger is history: migrations only go forward")
