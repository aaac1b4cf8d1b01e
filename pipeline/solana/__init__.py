"""Solana helpers shared by the executor's venue, the ledger's chain watch and the localnet.

RPC retries (:mod:`.rpc`), the trading account per environment (:mod:`.account`), key
files (:mod:`.keys`), SPL token layouts (:mod:`.tokens`) and chain constants
(:mod:`.constants`). It belongs to neither the executor nor the ledger, so each can read the
chain without importing the other.
"""
