"""Chain venues: where each final order's outcome was read from.

``orders.outcome_source``: ``transaction`` (getTransaction), ``balance_change`` (the
wallet's balances across a landed transaction the RPC would not serve) or ``status`` (a
transaction that failed on chain, its fee taken from its message); NULL for other venues.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("orders")}
    if "outcome_source" not in columns:  # a database made by create_all may have it
        op.execute("ALTER TABLE orders ADD COLUMN outcome_source VARCHAR(16)")


def downgrade() -> None:
    raise NotImplementedError("the ledger is history: migrations only go forward")
