"""Turn a batch of execution reports into the rows it books, vectorised over the batch.

An order moves only upwards through ``status_rank``: 1 while NEW, 2 once final (FILLED,
REJECTED or CANCELLED are all terminal, so one final report ends the order). A report is
*effective* if its rank is above both the rank already stored and every earlier report for
the same order in the batch; everything else is a duplicate. Per order, the last effective
report is the state written; an effective FILLED report books the order's one fill.

A chain venue's NEW reports each name one signed transaction; all of them are kept (as
signatures), also a second NEW report for a re-signed order, which is otherwise a duplicate:
restart reconciliation must know every transaction that may still land.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from pipeline.errors import BadInputError
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason, ReportDetail

RANK_NEW: Final = 1
RANK_FINAL: Final = 2

_STATUS_NAMES: Final = np.array(["", *(s.name.lower() for s in OrderStatus)], dtype=object)
_REASON_CODES: Final = np.array([r.value for r in RejectReason])
_WALLET_COLUMNS: Final = ("wallet_slot", "wallet_lamports", "wallet_base", "wallet_quote",
                          "message_fee")
_DETAIL_CODES: Final = np.array([d.value for d in ReportDetail])
_SOURCE_NAMES: Final = np.array([None, None, "transaction", "balance_change", "status"],
                                dtype=object)  # indexed by ReportDetail


def _reason_names() -> np.ndarray:
    names = np.full(max(RejectReason) + 1, None, dtype=object)
    for reason in RejectReason:
        names[reason.value] = None if reason is RejectReason.NONE else reason.name
    return names


Columns = dict[str, list[Any]]  # column name -> one value per row, all the same length


@dataclasses.dataclass(frozen=True)
class Booking:
    """The rows one batch books, column-wise, ready for one executemany per table."""

    order_inserts: Columns
    order_updates: Columns  # matched on b_client_order_id
    fills: Columns
    fill_records: np.ndarray  # the reports behind ``fills``, in batch order
    signatures: Columns  # every signed transaction named by a NEW report (may repeat)
    network_fee: float  # native SOL the batch's effective final reports cost
    duplicates: int
    unknowns: Columns  # orders the venue reported with an unknown outcome (still open)
    settled_signed: int  # effective final reports of orders that signed a transaction


def validate(reports: np.ndarray, symbols: Mapping[int, tuple[str, str, str]]) -> None:
    """Raise BadInputError naming the first malformed report, if any."""
    if not isinstance(reports, np.ndarray) or reports.dtype != REPORT_DTYPE or reports.ndim != 1:
        raise BadInputError("reports must be a 1-d array of REPORT_DTYPE")
    status = reports["status"]
    filled = status == OrderStatus.FILLED
    checks = {
        "unknown status": np.isin(status, [s.value for s in OrderStatus]),
        "side is not +1/-1": np.isin(reports["side"], [1, -1]),
        "unknown symbol_id": np.isin(reports["symbol_id"], list(symbols)),
        "unknown reject_reason": np.isin(reports["reject_reason"], _REASON_CODES),
        "unknown detail": np.isin(reports["detail"], _DETAIL_CODES),
        "quantity is not positive": np.isfinite(reports["quantity"]) & (reports["quantity"] > 0),
        "limit_price is not finite": np.isfinite(reports["limit_price"]),
        "network_fee is not finite and >= 0": np.isfinite(reports["network_fee"])
        & (reports["network_fee"] >= 0),
        "fill without positive filled_qty, avg_price and finite fee": ~filled | (
            np.isfinite(reports["filled_qty"]) & (reports["filled_qty"] > 0)
            & np.isfinite(reports["avg_price"]) & (reports["avg_price"] > 0)
            & np.isfinite(reports["fee"])
        ),
    }
    for problem, ok in checks.items():
        if not ok.all():
            i = int(np.argmin(ok))
            raise BadInputError(
                f"report {i} (client_order_id {int(reports['client_order_id'][i])}): {problem}"
            )


def effective_mask(ids: np.ndarray, ranks: np.ndarray, stored_ranks: np.ndarray) -> np.ndarray:
    """True for reports that move their order upwards (see module docstring)."""
    n = len(ids)
    order = np.argsort(ids, kind="stable")  # group by order, keep batch order within a group
    sorted_ids = ids[order]
    sorted_ranks = ranks[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    # Highest rank of the earlier reports of the same order: a running max that restarts
    # at each group because every group is lifted above all previous ones by its offset.
    previous = np.zeros(n, dtype=np.int64)
    previous[1:] = sorted_ranks[:-1]
    previous[starts] = 0
    offset = (np.cumsum(starts) - 1) * (RANK_FINAL + 2)
    earlier_max = np.maximum.accumulate(previous + offset) - offset
    effective = np.empty(n, dtype=bool)
    effective[order] = sorted_ranks > np.maximum(earlier_max, stored_ranks[order])
    return effective


def book(
    reports: np.ndarray,
    stored_ranks: np.ndarray,
    symbols: Mapping[int, tuple[str, str, str]],
    now: str,
) -> Booking:
    """The rows to write for a validated batch, given each report's stored order rank.

    ``now`` is the commit's timestamp already in the column's stored text form.
    """
    ids = reports["client_order_id"].view(np.int64)  # u64 stored as same-bits int64
    ranks = np.where(reports["status"] == OrderStatus.NEW, RANK_NEW, RANK_FINAL)
    effective_idx = np.flatnonzero(effective_mask(ids, ranks, stored_ranks))
    reversed_idx = effective_idx[::-1]
    _, first_seen = np.unique(ids[reversed_idx], return_index=True)
    last_idx = np.sort(reversed_idx[first_seen])  # each order's final state in this batch
    inserts = last_idx[stored_ranks[last_idx] == 0]
    updates = last_idx[stored_ranks[last_idx] > 0]
    fill_idx = effective_idx[reports["status"][effective_idx] == OrderStatus.FILLED]
    names = _symbol_names(reports, symbols)
    signed = np.flatnonzero((reports["status"] == OrderStatus.NEW)
                            & (reports["venue_ref"] != b""))
    finals = effective_idx[reports["status"][effective_idx] != OrderStatus.NEW]
    unknown = np.flatnonzero((reports["status"] == OrderStatus.NEW)
                             & (reports["detail"] == ReportDetail.OUTCOME_UNKNOWN))
    return Booking(
        order_inserts=_order_columns(reports[inserts], ranks[inserts], names[inserts], now),
        order_updates=_update_columns(reports[updates], ranks[updates], now),
        fills=_fill_columns(reports[fill_idx], names[fill_idx], now),
        fill_records=reports[fill_idx],
        signatures={
            "signature": _venue_refs(reports[signed]),
            "client_order_id": reports["client_order_id"][signed].view(np.int64).tolist(),
            "last_valid_block_height": reports["last_valid_height"][signed].view(
                np.int64).tolist(),
            **{column: reports[column][signed].view(np.int64).tolist()
               for column in _WALLET_COLUMNS},
            "created_at": [now] * len(signed),
        },
        network_fee=float(reports["network_fee"][finals].sum()),
        duplicates=len(reports) - len(effective_idx)
        - len(np.setdiff1d(unknown, effective_idx)),  # news, not repeats
        unknowns={
            "client_order_id": reports["client_order_id"][unknown].view(np.int64).tolist(),
            "signature": _venue_refs(reports[unknown]),
        },
        settled_signed=int((reports["venue_ref"][finals] != b"").sum()),
    )


def _symbol_names(reports: np.ndarray, symbols: Mapping[int, tuple[str, str, str]]) -> np.ndarray:
    ids = np.array(sorted(symbols), dtype=np.uint32)
    names = np.array([symbols[i][0] for i in ids.tolist()], dtype=object)
    return names[np.searchsorted(ids, reports["symbol_id"])]


def _status_columns(r: np.ndarray, ranks: np.ndarray, now: str) -> Columns:
    return {
        "status": _STATUS_NAMES[r["status"]].tolist(),
        "status_rank": ranks.tolist(),
        "filled_qty": r["filled_qty"].tolist(),
        "avg_price": r["avg_price"].tolist(),
        "fee": r["fee"].tolist(),
        "network_fee": r["network_fee"].tolist(),
        "reject_reason": _reason_names()[r["reject_reason"]].tolist(),
        "venue_ref": _venue_refs(r),
        "outcome_source": _SOURCE_NAMES[r["detail"]].tolist(),
        "updated_at": [now] * len(r),
    }


def _order_columns(r: np.ndarray, ranks: np.ndarray, names: np.ndarray,
                   now: str) -> Columns:
    return {
        "client_order_id": r["client_order_id"].view(np.int64).tolist(),
        "symbol": names.tolist(),
        "side": _sides(r),
        "quantity": r["quantity"].tolist(),
        "limit_price": r["limit_price"].tolist(),
        "tick_seq": r["tick_seq"].view(np.int64).tolist(),
        "tick_ingest_ns": r["tick_ingest_ns"].tolist(),
        "decision_ns": r["decision_ns"].tolist(),
        "send_ns": r["send_ns"].tolist(),
        "tick_to_order_ns": (r["send_ns"] - r["tick_ingest_ns"]).tolist(),
        "created_at": [now] * len(r),
        **_status_columns(r, ranks, now),
    }


def _update_columns(r: np.ndarray, ranks: np.ndarray, now: str) -> Columns:
    return {
        "b_client_order_id": r["client_order_id"].view(np.int64).tolist(),
        **_status_columns(r, ranks, now),
    }


def _fill_columns(r: np.ndarray, names: np.ndarray, now: str) -> Columns:
    return {
        "client_order_id": r["client_order_id"].view(np.int64).tolist(),
        "symbol": names.tolist(),
        "side": _sides(r),
        "quantity": r["filled_qty"].tolist(),
        "price": r["avg_price"].tolist(),
        "fee": r["fee"].tolist(),
        "venue_ref": _venue_refs(r),
        "venue_ts_ns": r["venue_ts_ns"].tolist(),
        "created_at": [now] * len(r),
    }


def _sides(r: np.ndarray) -> list[str]:
    sides: list[str] = np.where(r["side"] > 0, "buy", "sell").tolist()
    return sides


def _venue_refs(r: np.ndarray) -> list[str]:
    refs: list[str] = np.strings.decode(r["venue_ref"], "ascii", "replace").tolist()
    return refs
