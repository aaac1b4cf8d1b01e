"""What the strategy needs from the ledger at start-up, read through a read-only engine.

A restarted strategy must know the position it is already holding, or its risk limits
would start from zero. It reads the filled positions and the ledger's committed cursor in
the reports ring in one read transaction, so the two agree: every report below the
cursor is in the positions, every report from it onwards is not, and the strategy reads
the reports ring from exactly there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from pipeline.ledger.db import make_engine
from pipeline.ledger.models import Position, RingCursor


@dataclass(frozen=True)
class PositionSnapshot:
    filled: dict[int, float]  # symbol id -> signed filled position
    reports_cursor: int  # the first report not included in ``filled``


def read_positions(database: Path, symbols: Mapping[int, tuple[str, str, str]], ring: str,
                   instance_id: str) -> PositionSnapshot:
    """Positions and the matching reports-ring cursor (0 if the ledger has not booked any)."""
    if not database.exists():
        return PositionSnapshot({}, 0)
    ids = {name: symbol_id for symbol_id, (name, _base, _quote) in symbols.items()}
    engine = make_engine(database, read_only=True)
    try:
        with engine.begin() as conn:  # one transaction: positions and cursor agree
            rows = conn.execute(select(Position.symbol, Position.quantity)).all()
            cursor = conn.execute(select(RingCursor.cursor).where(
                RingCursor.ring == ring, RingCursor.instance_id == instance_id)
            ).scalar_one_or_none()
    except OperationalError:  # the ledger has not created its schema yet: nothing booked
        return PositionSnapshot({}, 0)
    finally:
        engine.dispose()
    filled = {ids[name]: float(qty) for name, qty in rows if name in ids}
    return PositionSnapshot(filled, int(cursor or 0))
