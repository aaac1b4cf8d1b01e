"""SPL token account and mint layouts: the few bytes the venue and the localnet read or write.

Only the classic SPL Token program's fixed layouts are handled (165-byte accounts, 82-byte
mints); Token-2022 extensions are refused by the checks rather than half-understood.
"""

from __future__ import annotations

import struct
from typing import Final

from solders.pubkey import Pubkey

TOKEN_PROGRAM_ID: Final = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ASSOCIATED_TOKEN_PROGRAM_ID: Final = Pubkey.from_string(
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
ACCOUNT_LEN: Final = 165
MINT_LEN: Final = 82
_ACCOUNT: Final = struct.Struct("<32s32sQI32sBIQQI32s")
_MINT: Final = struct.Struct("<I32sQBBI32s")
_INITIALIZED: Final = 1


def associated_token_address(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The owner's associated token account for ``mint`` (classic token program)."""
    seeds = [bytes(owner), bytes(TOKEN_PROGRAM_ID), bytes(mint)]
    return Pubkey.find_program_address(seeds, ASSOCIATED_TOKEN_PROGRAM_ID)[0]


def pack_account(mint: Pubkey, owner: Pubkey, amount: int) -> bytes:
    """An initialised token account holding ``amount`` base units, no delegate."""
    zero = bytes(32)
    return _ACCOUNT.pack(bytes(mint), bytes(owner), amount, 0, zero, _INITIALIZED, 0, 0, 0,
                         0, zero)


def pack_mint(authority: Pubkey, supply: int, decimals: int) -> bytes:
    """An initialised mint with ``authority`` as mint authority and no freeze authority."""
    return _MINT.pack(1, bytes(authority), supply, decimals, _INITIALIZED, 0, bytes(32))


def unpack_account(data: bytes) -> tuple[Pubkey, Pubkey, int]:
    """(mint, owner, amount) of a token account; ValueError if it is not one."""
    if len(data) != ACCOUNT_LEN:
        raise ValueError(f"token account data is {len(data)} bytes, expected {ACCOUNT_LEN}")
    mint, owner, amount, *_rest = _ACCOUNT.unpack(data)
    return Pubkey.from_bytes(mint), Pubkey.from_bytes(owner), int(amount)


def mint_decimals(data: bytes) -> int:
    """Decimals of a mint account; ValueError if it is not one."""
    if len(data) != MINT_LEN:
        raise ValueError(f"mint data is {len(data)} bytes, expected {MINT_LEN}")
    return int(_MINT.unpack(data)[3])
