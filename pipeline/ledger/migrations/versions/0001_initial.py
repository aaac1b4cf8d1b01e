"""The initial ledger schema and the triggers that protect history.

Frozen DDL (what ``create_all`` produced for the models at the time): a migration must keep
meaning the same thing after the models move on, so it never derives SQL from them.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

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


def upgrade() -> None:
    for ddl in (*_TABLES, *_TRIGGERS):
        op.execute(ddl)


def downgrade() -> None:
    raise NotImplementedError("the ledger is history: migrations only go forward")
