"""Chain venues: where each final order's outcome was read from; the wallet before signing.

``orders.outcome_source``: ``transaction`` (getTransaction), ``balance_change`` (the
wallet's balances across a landed transaction the RPC would not serve) or ``status`` (a
transaction that failed on chain, its fee taken from its message); NULL for other venues.

``order_signatures.wallet_*`` and ``message_fee``: the wallet's lamports and the pair's
token amounts just before the transaction was signed (``wallet_slot`` 0: not read), and
the fee its message fixes: a restarted executor measures with them a landed transaction
the RPC never serves.

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
    bind = op.get_bind()
    if bind.dialect.name not in {"sqlite", "postgresql"}:
        raise NotImplementedError("ledger migrations run on sqlite and postgresql, not "
                                  f"{bind.dialect.name}")
    # SQLite runs the frozen SQL text; PostgreSQL the same columns from SQLAlchemy types.
    sqlite = bind.dialect.name == "sqlite"
    inspector = sa.inspect(bind)
    columns = {c["name"] for c in inspector.get_columns("orders")}
    if "outcome_source" not in columns:  # a database made by create_all may have it
        if sqlite:
            op.execute("ALTER TABLE orders ADD COLUMN outcome_source VARCHAR(16)")
        else:
            op.add_column("orders", sa.Column("outcome_source", sa.String(16)))
    signed = {c["name"] for c in inspector.get_columns("order_signatures")}
    for column in ("wallet_slot", "wallet_lamports", "wallet_base", "wallet_quote",
                   "message_fee"):
        if column in signed:
            continue
        if sqlite:
            op.execute(f"ALTER TABLE order_signatures ADD COLUMN {column} BIGINT "
                       "NOT NULL DEFAULT 0")
        else:
            op.add_column("order_signatures", sa.Column(
                column, sa.BigInteger(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    raise NotImplementedError("the ledger is history: migrations only go forward")
