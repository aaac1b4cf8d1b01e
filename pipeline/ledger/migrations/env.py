"""Alembic environment: migrations always run on a connection the ledger hands in.

The ledger upgrades its own database at start-up inside its ``BEGIN IMMEDIATE``
transaction (SQLite DDL is transactional), so a failed migration leaves the file as it was.
There is no URL-based "offline" mode: the schema is only ever changed by the writer.
"""

from __future__ import annotations

from alembic import context

from pipeline.ledger.base import ModelBase

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("ledger migrations run through pipeline.ledger.migrate, which passes "
                       "the ledger's own connection")
context.configure(connection=connection, target_metadata=ModelBase.metadata,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
