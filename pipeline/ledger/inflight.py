"""The ledger's read API for orders signed but unsettled: a chain venue's restart input.

Every NEW report of a chain venue carries one signed transaction's signature and its
``lastValidBlockHeight``; the ledger keeps them all in ``order_signatures`` (an order that
was re-signed after an expiry has several). After a restart, an order still NEW in the
ledger is settled only by the status of those signatures, so the executor's Solana venue
reads them here, read-only, at start: the ledger owns its schema and this query, and no
other package runs SQL against its database.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import OperationalError as SqlOperationalError

from pipeline.ledger.db import make_engine
from pipeline.ring import inspect_segment


@dataclasses.dataclass(frozen=True)
class Signed:
    """One transaction signed for an order."""

    signature: str
    last_valid_height: int  # 0: not known (booked before the ledger kept heights)
    # The wallet before signing: slot (0: not read), lamports, base and quote amounts.
    wallet: tuple[int, int, int, int] = (0, 0, 0, 0)
    message_fee: int = 0  # lamports; 0: not known


def signed_in_flight(database: Path, reports_ring: Path,
                     wait_s: float = 30.0) -> dict[int, list[Signed]]:
    """The signatures of every order the ledger holds as NEW (by client_order_id), once
    the ledger has committed every report still in the ring at ``reports_ring`` (waiting at
    most ``wait_s``): a NEW report not yet committed would leave its order out."""
    deadline = time.monotonic() + wait_s
    while (info := inspect_segment(reports_ring)) is not None and info.unread \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    if not database.exists():
        return {}
    engine = make_engine(database, read_only=True)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT o.client_order_id, s.signature, s.last_valid_block_height, "
                "s.wallet_slot, s.wallet_lamports, s.wallet_base, s.wallet_quote, "
                "s.message_fee "
                "FROM orders o JOIN order_signatures s USING (client_order_id) "
                "WHERE o.status = 'new' "
                "UNION SELECT client_order_id, venue_ref, 0, 0, 0, 0, 0, 0 FROM orders "
                "WHERE status = 'new' AND venue_ref != '' AND venue_ref NOT IN "
                "(SELECT signature FROM order_signatures) "
                "ORDER BY 1, 3")).all()
    except SqlOperationalError as exc:
        if "no such table" in str(exc):
            return {}  # the ledger is still creating its schema: nothing was ever booked
        raise
    finally:
        engine.dispose()
    in_flight: dict[int, list[Signed]] = {}
    for coid, signature, height, slot, lamports, base, quote, fee in rows:
        in_flight.setdefault(int(coid) % (1 << 64), []).append(Signed(
            str(signature), int(height), (int(slot), int(lamports), int(base), int(quote)),
            int(fee)))
    return in_flight
