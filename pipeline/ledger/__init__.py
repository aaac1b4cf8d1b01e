"""The ledger: the one process that writes SQLite.

Execution reports arrive in batches from a lossless ring; :class:`LedgerStore` commits each
batch, the positions and balances it moves, and the ring cursor in one transaction, so a
restarted ledger resumes exactly where its last commit left off. Every other process opens
the database through :func:`make_engine` with ``read_only=True``.
"""

from pipeline.ledger.accounting import PositionState
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import SCHEMA_VERSION, init_db, make_engine
from pipeline.ledger.pacing import CommitPacer, estimate_wal_bytes
from pipeline.ledger.store import CommitResult, LedgerStore, SymbolMap

__all__ = [
    "SCHEMA_VERSION",
    "CommitPacer",
    "CommitResult",
    "LedgerConfig",
    "LedgerStore",
    "PositionState",
    "SymbolMap",
    "estimate_wal_bytes",
    "init_db",
    "make_engine",
]
