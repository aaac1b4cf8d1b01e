"""The initial ledger schema and the triggers that protect history.

Frozen DDL (what ``create_all`` produced for the models at the time): a migration must keep
meaning the same thing after the models move on, so it never derives SQL from them.

Two dialects: SQLite (the ledger's own file) runs the frozen SQL text below, unchanged since
the revision was written, so databases already migrated never differ from new ones.
PostgreSQL (a consolidated copy of the same schema) gets the same tables from SQLAlchemy
types and the same protections as plpgsql triggers: one function, ``ledger_refuse``, raises
the message each trigger passes it, with the SQLite trigger's name, condition and text.
PostgreSQL also has TRUNCATE, which skips row triggers: history tables refuse it too.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = (
    """CREATE TABLE orders (
        id INTEGER NOT NULL, client_order_id BIGINT NOT NULL, symbol VARCHAR(32) NOT NULL,
        side VARCHAR(4) NOT NULL, quantity FLOAT NOT NULL, limit_price FLOAT NOT NULL,
        status VARCHAR(16) NOT NULL, status_rank INTEGER NOT NULL, filled_qty FLOAT NOT NULL,
        avg_price FLOAT NOT NULL, fee FLOAT NOT NULL, reject_reason VARCHAR(32),
        tick_seq BIGINT NOT NULL, tick_ingest_ns BIGINT NOT NULL, decision_ns BIGINT NOT NULL,
        send_ns BIGINT NOT NULL, tick_to_order_ns BIGINT NOT NULL,
        venue_ref VARCHAR(88) NOT NULL, created_at DATETIME NOT NULL,
        updated_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (client_order_id))""",
    """CREATE TABLE positions (
        symbol VARCHAR(32) NOT NULL, quantity FLOAT NOT NULL, avg_price FLOAT NOT NULL,
        realized_pnl FLOAT NOT NULL, fees FLOAT NOT NULL, updated_at DATETIME NOT NULL,
        PRIMARY KEY (symbol))""",
    """CREATE TABLE balances (
        id INTEGER NOT NULL, asset VARCHAR(16) NOT NULL, amount FLOAT NOT NULL,
        ts DATETIME NOT NULL, reason VARCHAR(64) NOT NULL, PRIMARY KEY (id))""",
    "CREATE INDEX ix_balances_asset ON balances (asset)",
    """CREATE TABLE config (
        "key" VARCHAR(64) NOT NULL, value TEXT NOT NULL, updated_at DATETIME NOT NULL,
        PRIMARY KEY ("key"))""",
    """CREATE TABLE audit_log (
        id INTEGER NOT NULL, ts DATETIME NOT NULL, actor VARCHAR(64) NOT NULL,
        action VARCHAR(64) NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (id))""",
    """CREATE TABLE ring_cursors (
        ring VARCHAR(64) NOT NULL, instance_id VARCHAR(36) NOT NULL, cursor BIGINT NOT NULL,
        PRIMARY KEY (ring))""",
    """CREATE TABLE meta (
        "key" VARCHAR(64) NOT NULL, value TEXT NOT NULL, PRIMARY KEY ("key"))""",
    """CREATE TABLE fills (
        id INTEGER NOT NULL, client_order_id BIGINT NOT NULL, symbol VARCHAR(32) NOT NULL,
        side VARCHAR(4) NOT NULL, quantity FLOAT NOT NULL, price FLOAT NOT NULL,
        fee FLOAT NOT NULL, venue_ref VARCHAR(88) NOT NULL, venue_ts_ns BIGINT NOT NULL,
        created_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (client_order_id),
        FOREIGN KEY(client_order_id) REFERENCES orders (client_order_id))""",
)

# History is never deleted, and money already booked never changes. These hold for any
# writer, including an operator with the sqlite3 shell.
_TRIGGERS = (
    *(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
      f"BEGIN SELECT RAISE(ABORT, '{table} is history: DELETE is not allowed'); END"
      for table in ("orders", "fills", "balances", "audit_log")),
    "CREATE TRIGGER orders_forward_only BEFORE UPDATE ON orders "
    "WHEN NEW.status_rank < OLD.status_rank "
    "OR (NEW.status_rank = OLD.status_rank AND NEW.status IS NOT OLD.status) "
    "OR NEW.client_order_id IS NOT OLD.client_order_id OR NEW.symbol IS NOT OLD.symbol "
    "OR NEW.side IS NOT OLD.side OR NEW.quantity IS NOT OLD.quantity "
    "OR NEW.limit_price IS NOT OLD.limit_price "
    "BEGIN SELECT RAISE(ABORT, 'orders change only by moving status_rank upwards'); END",
    "CREATE TRIGGER fills_money_frozen BEFORE UPDATE ON fills "
    "WHEN NEW.client_order_id IS NOT OLD.client_order_id OR NEW.symbol IS NOT OLD.symbol "
    "OR NEW.side IS NOT OLD.side OR NEW.quantity IS NOT OLD.quantity "
    "OR NEW.price IS NOT OLD.price OR NEW.fee IS NOT OLD.fee "
    "BEGIN SELECT RAISE(ABORT, 'fills are booked money: UPDATE is not allowed'); END",
    "CREATE TRIGGER balances_money_frozen BEFORE UPDATE ON balances "
    "WHEN NEW.asset IS NOT OLD.asset OR NEW.amount IS NOT OLD.amount "
    "BEGIN SELECT RAISE(ABORT, 'balances are append-only: UPDATE is not allowed'); END",
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is history: UPDATE is not allowed'); END",
)


_HISTORY = ("orders", "fills", "balances", "audit_log")

# PostgreSQL: the SQLite triggers above, with ``IS DISTINCT FROM`` for SQLite's null-safe
# ``IS NOT``. The function raises integrity_constraint_violation, as SQLite's RAISE(ABORT)
# is a constraint failure: both reach SQLAlchemy as IntegrityError with the same message.
_PG_REFUSE = """CREATE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'integrity_constraint_violation';
END
$$"""
_PG_TRIGGERS = (
    *(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} FOR EACH ROW "
      f"EXECUTE FUNCTION ledger_refuse('{table} is history: DELETE is not allowed')"
      for table in _HISTORY),
    *(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
      f"EXECUTE FUNCTION ledger_refuse('{table} is history: TRUNCATE is not allowed')"
      for table in _HISTORY),
    "CREATE TRIGGER orders_forward_only BEFORE UPDATE ON orders FOR EACH ROW "
    "WHEN (NEW.status_rank < OLD.status_rank "
    "OR (NEW.status_rank = OLD.status_rank AND NEW.status IS DISTINCT FROM OLD.status) "
    "OR NEW.client_order_id IS DISTINCT FROM OLD.client_order_id "
    "OR NEW.symbol IS DISTINCT FROM OLD.symbol OR NEW.side IS DISTINCT FROM OLD.side "
    "OR NEW.quantity IS DISTINCT FROM OLD.quantity "
    "OR NEW.limit_price IS DISTINCT FROM OLD.limit_price) "
    "EXECUTE FUNCTION ledger_refuse('orders change only by moving status_rank upwards')",
    "CREATE TRIGGER fills_money_frozen BEFORE UPDATE ON fills FOR EACH ROW "
    "WHEN (NEW.client_order_id IS DISTINCT FROM OLD.client_order_id "
    "OR NEW.symbol IS DISTINCT FROM OLD.symbol OR NEW.side IS DISTINCT FROM OLD.side "
    "OR NEW.quantity IS DISTINCT FROM OLD.quantity OR NEW.price IS DISTINCT FROM OLD.price "
    "OR NEW.fee IS DISTINCT FROM OLD.fee) "
    "EXECUTE FUNCTION ledger_refuse('fills are booked money: UPDATE is not allowed')",
    "CREATE TRIGGER balances_money_frozen BEFORE UPDATE ON balances FOR EACH ROW "
    "WHEN (NEW.asset IS DISTINCT FROM OLD.asset OR NEW.amount IS DISTINCT FROM OLD.amount) "
    "EXECUTE FUNCTION ledger_refuse('balances are append-only: UPDATE is not allowed')",
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW "
    "EXECUTE FUNCTION ledger_refuse('audit_log is history: UPDATE is not allowed')",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for ddl in (*_TABLES, *_TRIGGERS):
            op.execute(ddl)
    elif dialect == "postgresql":
        _create_tables_portable()
        for ddl in (_PG_REFUSE, *_PG_TRIGGERS):
            op.execute(ddl)
    else:
        raise NotImplementedError(f"ledger migrations run on sqlite and postgresql, not {dialect}")


def _required(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    """A NOT NULL column (every column of these tables but ``reject_reason``)."""
    return sa.Column(name, type_, nullable=False)


def _create_tables_portable() -> None:
    """The tables of ``_TABLES`` in SQLAlchemy types, for PostgreSQL."""
    big, flt, when, req = sa.BigInteger(), sa.Float(), sa.DateTime(), _required
    op.create_table(
        "orders", sa.Column("id", sa.Integer(), primary_key=True),
        req("client_order_id", big), req("symbol", sa.String(32)), req("side", sa.String(4)),
        req("quantity", flt), req("limit_price", flt), req("status", sa.String(16)),
        req("status_rank", sa.Integer()), req("filled_qty", flt), req("avg_price", flt),
        req("fee", flt), sa.Column("reject_reason", sa.String(32)),
        req("tick_seq", big), req("tick_ingest_ns", big), req("decision_ns", big),
        req("send_ns", big), req("tick_to_order_ns", big), req("venue_ref", sa.String(88)),
        req("created_at", when), req("updated_at", when),
        sa.UniqueConstraint("client_order_id"))
    op.create_table(
        "positions", sa.Column("symbol", sa.String(32), primary_key=True),
        req("quantity", flt), req("avg_price", flt), req("realized_pnl", flt),
        req("fees", flt), req("updated_at", when))
    op.create_table(
        "balances", sa.Column("id", sa.Integer(), primary_key=True),
        req("asset", sa.String(16)), req("amount", flt), req("ts", when),
        req("reason", sa.String(64)))
    op.create_index("ix_balances_asset", "balances", ["asset"])
    op.create_table(
        "config", sa.Column("key", sa.String(64), primary_key=True),
        req("value", sa.Text()), req("updated_at", when))
    op.create_table(
        "audit_log", sa.Column("id", sa.Integer(), primary_key=True), req("ts", when),
        req("actor", sa.String(64)), req("action", sa.String(64)), req("detail", sa.Text()))
    op.create_table(
        "ring_cursors", sa.Column("ring", sa.String(64), primary_key=True),
        req("instance_id", sa.String(36)), req("cursor", big))
    op.create_table(
        "meta", sa.Column("key", sa.String(64), primary_key=True), req("value", sa.Text()))
    op.create_table(
        "fills", sa.Column("id", sa.Integer(), primary_key=True),
        req("client_order_id", big), req("symbol", sa.String(32)), req("side", sa.String(4)),
        req("quantity", flt), req("price", flt), req("fee", flt),
        req("venue_ref", sa.String(88)), req("venue_ts_ns", big), req("created_at", when),
        sa.UniqueConstraint("client_order_id"),
        sa.ForeignKeyConstraint(["client_order_id"], ["orders.client_order_id"]))


def downgrade() -> None:
    raise NotImplementedError("the ledger is history: migrations only go forward")
