"""Pyth prices: decode on-chain ``PriceUpdateV2`` accounts and Hermes JSON into quotes.

The legacy price accounts (with a ``status`` field) stopped updating on Solana in 2024;
current prices live in ``PriceUpdateV2`` accounts owned by the Pyth push oracle or the
receiver program. The account is an Anchor account: an 8-byte discriminator, the write
authority, a Borsh enum ``VerificationLevel`` (``Partial { num_signatures: u8 }`` is tag 0
plus one byte, ``Full`` is tag 1 alone), the price message, then the posted slot. Because
the enum's size varies, fields are read in sequence, never at fixed offsets.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pipeline.errors import BadInputError

PUSH_ORACLE_PROGRAM: Final = "pythWSnswVUd12oZpeFP8e9CVaEqJg25g1Vtc2biRsT"
RECEIVER_PROGRAM: Final = "rec5EKMGg6MxZYaMdyBfgwp4d5rB9T1VQH5pJv5LtFJ"
PYTH_OWNERS: Final = frozenset({PUSH_ORACLE_PROGRAM, RECEIVER_PROGRAM})
DISCRIMINATOR: Final = hashlib.sha256(b"account:PriceUpdateV2").digest()[:8]
_PARTIAL: Final = 0
_FULL: Final = 1
_MESSAGE: Final = struct.Struct("<32sqQiqqqQ")  # feed id .. ema_conf
_SLOT: Final = struct.Struct("<Q")
_NS_PER_S: Final = 1_000_000_000
ACCOUNT_SIZE: Final = 8 + 32 + 2 + _MESSAGE.size + _SLOT.size  # 134 bytes


@dataclass(frozen=True)
class PythPrice:
    """One decoded price; ``price`` and ``conf`` already scaled by ``10^expo``."""

    feed_id: str  # lower-case hex, no 0x
    price: float
    conf: float
    publish_time_s: int
    full_verification: bool
    posted_slot: int

    @property
    def conf_bps(self) -> float:
        """Confidence interval relative to the price, in basis points (quality)."""
        return self.conf / self.price * 1e4 if self.price > 0 else math.inf

    @property
    def publish_ns(self) -> int:
        return self.publish_time_s * _NS_PER_S


def encode_price_update(feed_id: bytes, price: int, conf: int, expo: int, publish_time_s: int,
                        *, slot: int = 1, partial_signatures: int | None = None,
                        authority: bytes = bytes(32)) -> bytes:
    """A ``PriceUpdateV2`` account body built to the documented layout (for local servers)."""
    level = (bytes([_FULL]) if partial_signatures is None
             else bytes([_PARTIAL, partial_signatures]))
    message = _MESSAGE.pack(feed_id, price, conf, expo, publish_time_s, publish_time_s - 1,
                            price, conf)
    body = DISCRIMINATOR + authority + level + message + _SLOT.pack(slot)
    return body.ljust(ACCOUNT_SIZE, b"\0")  # allocated for Partial: Full leaves a spare byte


def decode_price_update(data: bytes) -> PythPrice:
    """Decode a ``PriceUpdateV2`` account body; BadInputError if it is not one."""
    if len(data) < 8 + 32 + 1 or data[:8] != DISCRIMINATOR:
        raise BadInputError("not a PriceUpdateV2 account (discriminator mismatch)")
    offset = 8 + 32
    tag = data[offset]
    offset += 1
    if tag == _PARTIAL:
        offset += 1  # num_signatures
    elif tag != _FULL:
        raise BadInputError(f"unknown verification level tag {tag}")
    if len(data) < offset + _MESSAGE.size + _SLOT.size:
        raise BadInputError(f"PriceUpdateV2 account too short ({len(data)} bytes)")
    feed, price, conf, expo, publish, _prev, _ema, _ema_conf = _MESSAGE.unpack_from(data, offset)
    offset += _MESSAGE.size
    (slot,) = _SLOT.unpack_from(data, offset)
    scale = 10.0 ** expo
    return PythPrice(feed_id=feed.hex(), price=price * scale, conf=conf * scale,
                     publish_time_s=publish, full_verification=tag == _FULL, posted_slot=slot)


def parse_hermes(body: Any) -> list[PythPrice]:
    """Prices from a Hermes ``/v2/updates/price/latest?parsed=true`` answer.

    ``price`` and ``conf`` are integer strings scaled by ``10^expo``. Hermes relays signed
    updates, so they count as fully verified here.
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("parsed"), list):
        raise BadInputError("Hermes answer lacks a 'parsed' list")
    prices = []
    for item in body["parsed"]:
        try:
            quote = item["price"]
            expo = int(quote["expo"])
            scale = 10.0 ** expo
            slot = int(item.get("metadata", {}).get("slot") or 0)
            prices.append(PythPrice(feed_id=str(item["id"]).lower().removeprefix("0x"),
                                    price=int(quote["price"]) * scale,
                                    conf=int(quote["conf"]) * scale,
                                    publish_time_s=int(quote["publish_time"]),
                                    full_verification=True, posted_slot=slot))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"malformed Hermes price entry: {exc!r}") from exc
    return prices


def normalise_feed_id(feed_id: str) -> str:
    """Lower-case hex without ``0x``, as both paths report it."""
    return feed_id.lower().removeprefix("0x")
