"""The invariants every execution-fault run is held to, from the chain's record and the ledger.

The chain's side is what the localnet saved at its orderly stop (``localnet-state.json``):
the trader's accounts and every transaction it executed (signature, slot, err). The ledger's
side is its SQLite file: orders, the signatures signed for each (``order_signatures`` and
``orders.venue_ref``), balances. The executor's JSON log adds the unknown-outcome events.

a. ledger balances == chain balances for every asset;
b. every order has at most one landed transaction;
c. no order whose transaction landed is booked rejected or left open (a transaction that
   failed on chain may end its order rejected, but its network fee must be booked);
d. every landed transaction is in the ledger and belongs to an order, every fill's
   signature landed without error, and every filled order has its fill row;
e. the run traded (a few landed transactions); or, where the executor must refuse to sign,
   nothing landed and the log names the missing capability.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any, Final

from harness import log_events, query
from solders.pubkey import Pubkey

from pipeline.solana.account import NATIVE_SOL
from pipeline.solana.keys import load_keypair
from pipeline.solana.tokens import associated_token_address, unpack_account

TOLERANCE: Final = 1e-6


@dataclasses.dataclass(frozen=True)
class Landed:
    signature: str
    slot: int
    err: str | None


@dataclasses.dataclass
class Summary:
    """One run's key numbers and the invariants it broke (empty: all held)."""

    scenario: str
    orders: int = 0
    landed: int = 0
    landed_failed: int = 0  # landed with err set (fee paid, no swap)
    fills: int = 0
    rejected: int = 0
    open_at_end: int = 0
    unknown_seen: int = 0
    max_unknown_s: float | None = None
    chain_equals_ledger: bool = False
    faults_served: int = 0
    sent_through_proxy: int = 0
    exit_code: int | None = None
    violations: list[str] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=False)


def chain_record(data_dir: Path) -> tuple[dict[str, float], list[Landed]]:
    """The trader's balances (tokens, and lamports as native SOL) and every executed
    transaction, as the localnet saved them at its orderly stop."""
    state = json.loads((data_dir / "localnet-state.json").read_text())
    trader = load_keypair(data_dir / "keys" / "localnet-trader.json").pubkey()
    balances = {NATIVE_SOL: state["accounts"][str(trader)]["lamports"] / 1e9}
    for name, asset in state["assets"].items():
        key = associated_token_address(trader, Pubkey.from_string(asset["mint"]))
        amount = unpack_account(base64.b64decode(state["accounts"][str(key)]["data"]))[2]
        balances[name] = amount / 10 ** asset["decimals"]
    landed = [Landed(str(t["signature"]), int(t["slot"]), t["err"])
              for t in state.get("transactions", [])]
    return balances, landed


def ledger_balances(database: Path) -> dict[str, float]:
    rows = query(database, "SELECT asset, amount FROM balances WHERE id IN "
                           "(SELECT max(id) FROM balances GROUP BY asset)")
    return {str(asset): float(str(amount)) for asset, amount in rows}


def _orders(database: Path) -> dict[int, dict[str, Any]]:
    rows = query(database, "SELECT client_order_id, status, venue_ref, network_fee, "
                           "reject_reason FROM orders")
    return {int(str(r[0])): {"status": str(r[1]), "venue_ref": str(r[2] or ""),
                             "network_fee": float(str(r[3])), "reason": r[4]} for r in rows}


def _signature_owners(database: Path, orders: dict[int, dict[str, Any]]) -> dict[str, int]:
    owners = {str(s): int(str(c)) for s, c in query(
        database, "SELECT signature, client_order_id FROM order_signatures")}
    for coid, order in orders.items():
        if order["venue_ref"]:
            owners.setdefault(order["venue_ref"], coid)
    return owners


def _unknowns(log_file: Path) -> tuple[int, float | None]:
    """Unknown outcomes the executor reported and the longest it took to resolve one
    (events ``solana.outcome_unknown`` / ``solana.outcome_resolved``; absent before issue
    12's fix, then 0 and None)."""
    seen = len(log_events(log_file, "solana.outcome_unknown"))
    resolved = [float(str(e["unknown_s"])) for e in log_events(
        log_file, "solana.outcome_resolved") if "unknown_s" in e]
    return seen, max(resolved, default=None)


def refusal_named(data_dir: Path, words: tuple[str, ...]) -> bool:
    """A warning or error line of the executor's log names every one of ``words``."""
    log_file = data_dir / "logs" / "executor.log"
    if not log_file.exists():
        return False
    for line in log_file.read_text(errors="replace").splitlines():
        lowered = line.lower()
        if ("warning" in lowered or "error" in lowered) and all(w in lowered for w in words):
            return True
    return False


def check_run(scenario: str, data_dir: Path, *, trades: bool = True, min_landed: int = 3,
              refusal_words: tuple[str, ...] = ()) -> Summary:
    """Every invariant of the module doc over one finished run; fills in a Summary."""
    database = data_dir / "ledger-localnet.sqlite"
    summary = Summary(scenario)
    chain, landed = chain_record(data_dir)
    ledger = ledger_balances(database)
    orders = _orders(database)
    owners = _signature_owners(database, orders)
    summary.orders = len(orders)
    summary.landed = len(landed)
    summary.landed_failed = sum(1 for t in landed if t.err is not None)
    summary.fills = int(str(query(database, "SELECT count(*) FROM fills")[0][0]))
    summary.rejected = sum(1 for o in orders.values() if o["status"] == "rejected")
    summary.open_at_end = sum(1 for o in orders.values() if o["status"] == "new")
    summary.unknown_seen, summary.max_unknown_s = _unknowns(data_dir / "logs" / "executor.log")
    bad: list[str] = []

    differences = {a: (c, ledger.get(a, 0.0)) for a, c in chain.items()
                   if abs(c - ledger.get(a, 0.0)) > TOLERANCE}
    summary.chain_equals_ledger = not differences
    if differences:
        bad.append(f"a: ledger != chain (asset: chain, ledger) {differences}")

    per_order: dict[int, list[Landed]] = {}
    for tx in landed:
        coid = owners.get(tx.signature)
        if coid is None or coid not in orders:
            bad.append(f"d: landed transaction {tx.signature} (err {tx.err}) is in no order")
            continue
        per_order.setdefault(coid, []).append(tx)
    twice = {coid: len(txs) for coid, txs in per_order.items() if len(txs) > 1}
    if twice:
        bad.append(f"b: {len(twice)} orders landed more than once (order: landed) {twice}")

    for coid, txs in per_order.items():
        order = orders[coid]
        if any(t.err is None for t in txs) and order["status"] != "filled":
            bad.append(f"c: order {coid} landed a swap but is booked {order['status']} "
                       f"({order['reason']})")
        elif all(t.err is not None for t in txs) and order["network_fee"] <= 0:
            bad.append(f"c: order {coid} failed on chain without its network fee booked")
    unbooked = query(database, "SELECT o.client_order_id FROM orders o LEFT JOIN fills f "
                               "USING (client_order_id) WHERE o.status = 'filled' "
                               "AND f.id IS NULL")
    for (coid,) in unbooked:
        bad.append(f"d: order {coid} is filled without a fill row")
    ok_landed = {t.signature for t in landed if t.err is None}
    for coid, order in orders.items():
        if order["status"] == "filled" and order["venue_ref"] not in ok_landed:
            bad.append(f"d: order {coid} booked filled by {order['venue_ref']}, which did not "
                       "land")

    if trades and summary.landed < min_landed:
        bad.append(f"e: only {summary.landed} landed transactions, {min_landed} expected")
    if not trades:
        if summary.landed:
            bad.append(f"e: {summary.landed} transactions landed where signing must be refused")
        if not refusal_named(data_dir, refusal_words):
            bad.append(f"e: no log line refusing to sign names {refusal_words}")
    summary.violations = _grouped(bad)
    return summary


def _grouped(violations: list[str]) -> list[str]:
    """One line per invariant: how many times it broke and the first example."""
    by_key: dict[str, list[str]] = {}
    for text in violations:
        by_key.setdefault(text.split(":", 1)[0], []).append(text)
    return [items[0] if len(items) == 1 else f"{items[0]} (and {len(items) - 1} more)"
            for _key, items in sorted(by_key.items())]


__all__ = ["Summary", "chain_record", "check_run", "ledger_balances", "refusal_named"]
