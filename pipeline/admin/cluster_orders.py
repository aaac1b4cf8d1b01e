"""``pipeline admin --cluster orders``: open and recent orders of every host, from the
consolidated PostgreSQL (the ``cluster.orders`` view), in one READ ONLY transaction."""

from __future__ import annotations

from typing import Final

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from pipeline.admin.readonly import Rows
from pipeline.cluster.pgurl import redacted, scrub
from pipeline.errors import OperationalError
from pipeline.ledger.models import to_u64
from pipeline.ledger.reports import RANK_FINAL

_COLUMNS: Final = ("host, id, client_order_id, symbol, side, quantity, limit_price, status, "
                   "filled_qty, avg_price, reject_reason, created_at")
# Every open order (few: the executors' pending ones) and the newest ``limit`` of all.
_QUERY: Final = (f"SELECT {_COLUMNS} FROM cluster.orders WHERE status_rank < {RANK_FINAL} "
                 f"UNION SELECT * FROM (SELECT {_COLUMNS} FROM cluster.orders "
                 "ORDER BY created_at DESC, host, id DESC LIMIT :limit) AS recent "
                 "ORDER BY created_at DESC, host, id DESC")


def cluster_orders(url: URL, limit: int) -> tuple[list[str], Rows]:
    """(column names, rows): open orders of all hosts and the ``limit`` newest, newest
    first, client order ids as the u64 the pipeline logs."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            result = conn.execute(text(_QUERY), {"limit": limit})
            columns = list(result.keys())
            coid = columns.index("client_order_id")
            rows = [(*r[:coid], to_u64(r[coid]), *r[coid + 1:]) for r in result]
    except DBAPIError as exc:
        raise OperationalError(f"cannot read cluster.orders from {redacted(url)}: "
                               f"{scrub(str(exc.orig), url)}") from None
    finally:
        engine.dispose()
    return columns, rows
