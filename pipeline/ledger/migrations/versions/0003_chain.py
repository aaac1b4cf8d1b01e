"""Chain venues: every signed transaction per order, network fees and chain balance readings.

- ``order_signatures``: one row per transaction signed for an order (its signature and
  ``lastValidBlockHeight``), from the NEW reports. An order re-signed after an expiry has
  several; restart reconciliation needs all of them.
- ``orders.network_fee``: native SOL the order's landed transaction cost (fees).
- ``chain_balances``: the trading account's balances read from the chain, with the ledger's
  balance at the same moment.
- A partial index on open orders: the chain check asks "is anything in flight?" often.

SQLite runs the frozen SQL text; PostgreSQL the same schema from SQLAlchemy types and the
triggers through 0001's ``ledger_refuse`` (plus TRUNCATE, which skips row triggers there).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS order_signatures (
        id INTEGER NOT NULL, signature VARCHAR(88) NOT NULL, client_order_id BIGINT NOT NULL,
        last_valid_block_height BIGINT NOT NULL, created_at DATETIME NOT NULL,
        PRIMARY KEY (id), UNIQUE (signature),
        FOREIGN KEY(client_order_id) REFERENCES orders (client_order_id))""",
    "CREATE INDEX IF NOT EXISTS ix_order_signatures_client_order_id "
    "ON order_signatures (client_order_id)",
    """CREATE TABLE IF NOT EXISTS chain_balances (
        id INTEGER NOT NULL, asset VARCHAR(16) NOT NULL, amount FLOAT NOT NULL,
        ledger_amount FLOAT NOT NULL, ts DATETIME NOT NULL, reason VARCHAR(64) NOT NULL,
        PRIMARY KEY (id))""",
    "CREATE INDEX IF NOT EXISTS ix_chain_balances_asset ON chain_balances (asset)",
    "CREATE INDEX IF NOT EXISTS ix_orders_open ON orders (status) WHERE status = 'new'",
    *(f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
      f"BEGIN SELECT RAISE(ABORT, '{table} is history: DELETE is not allowed'); END"
      for table in ("order_signatures", "chain_balances")),
    *(f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
      f"BEGIN SELECT RAISE(ABORT, '{table} is history: UPDATE is not allowed'); END"
      for table in ("order_signatures", "chain_balances")),
)


_PG_TRIGGERS = tuple(
    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} FOR EACH {each} "
    f"EXECUTE FUNCTION ledger_refuse('{table} is history: {event} is not allowed')"
    for table in ("order_signatures", "chain_balances")
    for event, each in (("DELETE", "ROW"), ("TRUNCATE", "STATEMENT"), ("UPDATE", "ROW"))
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()
    else:
        raise NotImplementedError(f"ledger migrations run on sqlite and postgresql, not {dialect}")


def _upgrade_sqlite() -> None:
    # IF NOT EXISTS and the column check: a pre-alembic database adopted at 0001 may have
    # all of this from create_all.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("orders")}
    if "network_fee" not in columns:
        op.execute("ALTER TABLE orders ADD COLUMN network_fee FLOAT NOT NULL DEFAULT 0")
    for ddl in _STATEMENTS:
        op.execute(ddl)


def _upgrade_postgresql() -> None:
    # No IF NOT EXISTS: PostgreSQL databases are only ever made by these migrations.
    big, when = sa.BigInteger(), sa.DateTime()
    op.add_column("orders", sa.Column("network_fee", sa.Float(), nullable=False,
                                      server_default=sa.text("0")))
    op.create_table(
        "order_signatures", sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("signature", sa.String(88), nullable=False),
        sa.Column("client_order_id", big, nullable=False),
        sa.Column("last_valid_block_height", big, nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.UniqueConstraint("signature"),
        sa.ForeignKeyConstraint(["client_order_id"], ["orders.client_order_id"]))
    op.create_index("ix_order_signatures_client_order_id", "order_signatures",
                    ["client_order_id"])
    op.create_table(
        "chain_balances", sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("ledger_amount", sa.Float(), nullable=False),
        sa.Column("ts", when, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False))
    op.create_index("ix_chain_balances_asset", "chain_balances", ["asset"])
    op.create_index("ix_orders_open", "orders", ["status"],
                    postgresql_where=sa.text("status = 'new'"))
    for ddl in _PG_TRIGGERS:
        op.execute(ddl)


def downgrade() -> None:
    raise NotImplementedError("the ledger is history: migrations only go forward")
