"""Encrypted ledger backups to S3: hourly snapshots plus increments every minute.

Modules: ``config`` (what to ship where), ``crypto`` (AES-256-GCM envelopes and the
keyring), ``objects`` (S3 object names and transfer), ``snapshot`` / ``increment`` (what is
read from SQLite), ``agent`` (the thread in the ledger process), ``restore`` (the way
back), ``cli`` (``pipeline backup`` and ``pipeline restore``).
"""
