"""The Solana venue: Jupiter-shaped swap orders, checked, signed once, landed and confirmed.

One code path for mainnet, devnet and the offline localnet; only endpoints, keys and mints
differ. Network work runs on an asyncio loop in a worker thread so the executor's tick path
never waits on the RPC.
"""
