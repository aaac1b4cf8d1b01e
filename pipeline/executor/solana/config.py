"""The Solana venue's settings: endpoints, key file, fees, checks and landing cadence.

Secrets stay out of the file: the swap API key is read from the environment variable named
by ``api_key_env`` and the keypair from ``keypair_path`` (mode 0600). On localnet the
endpoints, key file and mints come from the running localnet's manifest instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final

from pipeline.configtools import require
from pipeline.solana.constants import MEMO_PROGRAM

COMPUTE_BUDGET_PROGRAM: Final = "ComputeBudget111111111111111111111111111111"
SYSTEM_PROGRAM: Final = "11111111111111111111111111111111"
TOKEN_PROGRAM: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATA_PROGRAM: Final = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
JUPITER_V6_PROGRAM: Final = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"


def _programs() -> tuple[str, ...]:
    return (COMPUTE_BUDGET_PROGRAM, SYSTEM_PROGRAM, TOKEN_PROGRAM, ATA_PROGRAM,
            JUPITER_V6_PROGRAM, MEMO_PROGRAM)


@dataclasses.dataclass(frozen=True)
class SolanaConfig:
    """``[executor.solana]``: see "Solana venues" in the README for devnet and mainnet."""

    rpc_url: str = ""  # e.g. https://api.mainnet-beta.solana.com (localnet: its own if empty)
    swap_url: str = ""  # Jupiter base URL, e.g. https://api.jup.ag (localnet: its own if empty)
    api: str = "v2"  # v2: GET /swap/v2/order (+ POST /execute); v1: /swap/v1/quote + /swap
    landing: str = "self"  # self: send via our RPC and confirm; execute: POST /execute (v2)
    api_key_env: str = "JUPITER_API_KEY"  # env variable holding the x-api-key (may be unset)
    keypair_path: str = ""  # Solana CLI JSON keypair, mode 0600 (empty on localnet)
    # The wallet's public key (base58). The ledger watches the wallet with it; empty: it is
    # read from keypair_path, which puts the secret key in the ledger's memory too.
    owner: str = ""
    slippage_bps: int = 50  # v1 quote slippage; the limit price bounds every order anyway
    compute_unit_limit: int = 200_000
    compute_unit_price_micro_lamports: int = 10_000
    max_fee_lamports: int = 100_000  # most SOL a swap may cost the taker (fees, priority)
    allowed_programs: tuple[str, ...] = dataclasses.field(default_factory=_programs)
    rpc_timeout_s: float = 5.0
    rpc_attempts: int = 6  # tries per RPC call on 429 / 5xx / timeouts, with back-off
    backoff_s: float = 0.1  # first retry delay; doubles per retry, capped at 2 s
    resend_interval_s: float = 2.0  # re-send the same signed bytes this often until landed
    confirm_poll_s: float = 0.05
    # Polls that fail or find a landed transaction not yet served back off up to this.
    poll_max_s: float = 2.0
    commitment: str = "confirmed"  # a status at this level (or finalized) means landed
    # A landed transaction whose details the RPC does not serve for this long (at once on
    # -32601) is measured from the wallet's balance change across it.
    details_wait_s: float = 5.0
    unknown_after_s: float = 2.0  # an order whose fate the RPC leaves open this long is unknown
    unknown_page_after_s: float = 300.0  # ... and pages (OrderOutcomeUnknown) after this
    max_builds: int = 3  # fresh transactions per order after the previous one expired
    balance_tolerance: float = 1e-6  # asset units: chain vs ledger beyond this stops trading
    balance_check_interval_s: float = 1.0  # the ledger reads the chain at most this often
    balance_recheck_s: float = 60.0  # and at least this often (a wallet drained elsewhere)

    def __post_init__(self) -> None:
        require(self.api in ("v1", "v2"), "executor.solana.api", self.api, "v1 or v2")
        require(self.landing in ("self", "execute"), "executor.solana.landing", self.landing,
                "self or execute")
        require(self.landing == "self" or self.api == "v2", "executor.solana.landing",
                self.landing, "execute needs api = v2 (v1 has no /execute)")
        require(0 <= self.slippage_bps < 10_000, "executor.solana.slippage_bps",
                self.slippage_bps, "must be between 0 and 9999")
        require(0 < self.compute_unit_limit <= 1_400_000, "executor.solana.compute_unit_limit",
                self.compute_unit_limit, "must be between 1 and 1400000")
        require(self.compute_unit_price_micro_lamports >= 0,
                "executor.solana.compute_unit_price_micro_lamports",
                self.compute_unit_price_micro_lamports, "must be >= 0")
        require(self.max_fee_lamports > 0, "executor.solana.max_fee_lamports",
                self.max_fee_lamports, "must be > 0")
        require(self.commitment in ("confirmed", "finalized"), "executor.solana.commitment",
                self.commitment, "confirmed or finalized")
        for name in ("rpc_timeout_s", "backoff_s", "resend_interval_s", "confirm_poll_s",
                     "poll_max_s", "details_wait_s", "unknown_after_s", "unknown_page_after_s",
                     "balance_check_interval_s", "balance_recheck_s"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, f"executor.solana.{name}", value,
                    "must be a positive number of seconds")
        require(self.rpc_attempts >= 1, "executor.solana.rpc_attempts", self.rpc_attempts,
                "must be >= 1")
        require(self.max_builds >= 1, "executor.solana.max_builds", self.max_builds,
                "must be >= 1")
        require(self.balance_tolerance >= 0, "executor.solana.balance_tolerance",
                self.balance_tolerance, "must be >= 0")
