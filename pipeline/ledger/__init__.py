"""The ledger: the one process that writes SQLite.

Execution reports arrive in batches from a lossless ring; :class:`LedgerStore` commits each
batch, the positions and balances it moves, and the ring cursor in one transaction, so a
restarted ledger resumes exactly where its last commit left off. Every other process opens
the database through :func:`make_engine` with ``read_only=True``.
"""
