"""Views over every host's ledger copy, in the ``cluster`` schema.

- ``orders``, ``fills``, ``balances`` (history), ``positions``: each host's rows with a
  ``host`` column, columns in the models' order;
- ``balances_current``: the latest balance row per host and asset (balances are
  append-only history in the ledger: the latest row is the amount); ``balances_total``
  sums them across hosts;
- ``positions_total``: per symbol across hosts, the net quantity, the cost basis
  (sum of quantity x average price, quote units; divide by the quantity for the average
  price when all hosts are on the same side), realized PnL and fees;
- ``pnl_by_symbol`` and ``pnl``: realized PnL derived from the fills themselves, with the
  ledger's own average-cost rule (:meth:`pipeline.ledger.accounting.PositionState.
  after_fill`, ported to the ``pnl_step`` aggregate below) applied in fill id order per
  host and symbol; ``pnl`` per host with ``net_pnl = realized_pnl - fees`` as the ledger
  reports it, ``pnl_total`` across hosts. Being independent of ``positions``, it is also a
  check: each host's ``pnl_by_symbol`` equals its ``positions`` once both are shipped.

Views are ``CREATE OR REPLACE``d in dependency order when a host is added, so views that
people build on top of them survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pipeline.ledger import models  # noqa: F401  (registers every table in the metadata)
from pipeline.ledger.accounting import QTY_EPSILON
from pipeline.ledger.base import ModelBase

_UNIONS: Final = ("orders", "fills", "balances", "positions")

# PositionState.after_fill, statement for statement: float8 is IEEE double like Python's
# float and the operations run in the same order, so the results are the same numbers.
_PNL_STEP: Final = f"""
CREATE OR REPLACE FUNCTION cluster.pnl_step(state float8[], signed_qty float8, price float8,
                                            fee float8) RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    old_qty float8 := state[1]; avg float8 := state[2]; realized float8 := state[3];
    new_qty float8 := state[1] + signed_qty; closed float8;
BEGIN
    IF abs(new_qty) < {QTY_EPSILON!r} THEN new_qty := 0; END IF;
    IF old_qty = 0 OR (old_qty > 0) = (signed_qty > 0) THEN
        IF new_qty <> 0 THEN
            avg := (avg * abs(old_qty) + price * abs(signed_qty))
                   / (abs(old_qty) + abs(signed_qty));
        ELSE
            avg := 0;
        END IF;
    ELSE
        closed := least(abs(signed_qty), abs(old_qty));
        realized := realized + closed * (price - avg)
                    * (CASE WHEN old_qty > 0 THEN 1.0 ELSE -1.0 END)::float8;
        IF new_qty = 0 THEN
            avg := 0;
        ELSIF (new_qty > 0) <> (old_qty > 0) THEN
            avg := price;
        END IF;
    END IF;
    RETURN ARRAY[new_qty, avg, realized, state[4] + fee];
END
$$"""
_PNL_AGGREGATE: Final = (
    "CREATE OR REPLACE AGGREGATE cluster.pnl_state(float8, float8, float8) "
    "(SFUNC = cluster.pnl_step, STYPE = float8[], INITCOND = '{0,0,0,0}')")

_DERIVED: Final = (
    """CREATE OR REPLACE VIEW cluster.balances_current AS
       SELECT DISTINCT ON (host, asset) host, asset, amount, ts
       FROM cluster.balances ORDER BY host, asset, id DESC""",
    """CREATE OR REPLACE VIEW cluster.balances_total AS
       SELECT asset, sum(amount) AS amount, count(*) AS hosts
       FROM cluster.balances_current GROUP BY asset""",
    """CREATE OR REPLACE VIEW cluster.positions_total AS
       SELECT symbol, sum(quantity) AS quantity, sum(quantity * avg_price) AS cost_basis,
              sum(realized_pnl) AS realized_pnl, sum(fees) AS fees, count(*) AS hosts
       FROM cluster.positions GROUP BY symbol""",
    """CREATE OR REPLACE VIEW cluster.pnl_by_symbol AS
       SELECT host, symbol, state[1] AS quantity, state[2] AS avg_price,
              state[3] AS realized_pnl, state[4] AS fees
       FROM (SELECT host, symbol,
                    cluster.pnl_state(CASE side WHEN 'buy' THEN quantity ELSE -quantity END,
                                      price, fee ORDER BY id) AS state
             FROM cluster.fills GROUP BY host, symbol) AS per_symbol""",
    """CREATE OR REPLACE VIEW cluster.pnl AS
       SELECT host, sum(realized_pnl) AS realized_pnl, sum(fees) AS fees,
              sum(realized_pnl) - sum(fees) AS net_pnl
       FROM cluster.pnl_by_symbol GROUP BY host""",
    """CREATE OR REPLACE VIEW cluster.pnl_total AS
       SELECT coalesce(sum(realized_pnl), 0) AS realized_pnl, coalesce(sum(fees), 0) AS fees,
              coalesce(sum(net_pnl), 0) AS net_pnl, count(*) AS hosts
       FROM cluster.pnl""",
)


def _union(table: str, hosts: Sequence[str]) -> str:
    columns = ", ".join(f'"{c.name}"' for c in ModelBase.metadata.tables[table].columns)
    parts = [f"SELECT '{host}'::text AS host, {columns} FROM \"{host}\".{table}"
             for host in hosts]
    return f"CREATE OR REPLACE VIEW cluster.{table} AS " + " UNION ALL ".join(parts)


def refresh_views(conn: Connection, hosts: Sequence[str]) -> None:
    """(Re)define every cluster view over ``hosts`` (validated schema names, at least one),
    in the caller's transaction."""
    if not hosts:
        raise ValueError("refresh_views: no hosts")
    conn.execute(text(_PNL_STEP))
    conn.execute(text(_PNL_AGGREGATE))
    for table in _UNIONS:
        conn.execute(text(_union(table, hosts)))
    for ddl in _DERIVED:
        conn.execute(text(ddl))
