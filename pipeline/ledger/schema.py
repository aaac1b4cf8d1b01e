"""The schema revision this code writes and expects: the alembic head.

A module of its own, with no imports, so that start-up checks in every process can compare
it with the database's ``meta.schema_version`` without loading SQLAlchemy.
"""

from typing import Final

SCHEMA_VERSION: Final = "0004"  # the alembic head; tests check they agree
