"""Low-latency Solana trading pipeline: four processes over shared-memory rings."""
