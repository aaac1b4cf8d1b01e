"""Chain constants more than one package needs (program ids, the wrapped-SOL mint)."""

from __future__ import annotations

from typing import Final

WRAPPED_SOL_MINT: Final = "So11111111111111111111111111111111111111112"
LAMPORTS_PER_SOL: Final = 1_000_000_000
MEMO_PROGRAM: Final = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"  # moves no funds
