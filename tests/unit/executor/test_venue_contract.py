"""Every Venue keeps the same promises: the same scenarios against each implementation.

The paper venue runs in memory; the Solana venue trades on a real localnet (LiteSVM chain,
maker and JSON-RPC server on 127.0.0.1, :mod:`localnet_kit`). A scenario drives a venue the
way the executor does (submit, on_ticks, poll, cancel_all, close) and checks only what the
:class:`~pipeline.executor.venue.Venue` contract promises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from localnet_kit import SYMBOL_ID, Localnet, make_venue, running_localnet
from localnet_kit import intent as solana_intent
from testkit import eventually

from pipeline.executor.config import ExecutorConfig
from pipeline.executor.paper import PaperVenue
from pipeline.executor.venue import Venue
from pipeline.records import (
    INTENT_DTYPE,
    REPORT_DTYPE,
    TICK_DTYPE,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
)


@dataclass
class Case:
    """One venue under test and how to make orders and ticks it accepts."""

    venue: Venue
    order: Callable[[int], np.ndarray]  # a valid, marketable one-row intent
    timeout_s: float  # for every order to reach its final report
    price: float
    seen: list[np.ndarray] = field(default_factory=list)
    _tick_seq: int = 1_000

    def tick(self) -> np.ndarray:
        """A tick later (by sequence) than every order's decision tick."""
        self._tick_seq += 1
        row = np.zeros(1, dtype=TICK_DTYPE)
        row["seq"], row["symbol_id"], row["price"] = self._tick_seq, SYMBOL_ID, self.price
        return row

    def keep(self, reports: np.ndarray) -> np.ndarray:
        assert reports.dtype == REPORT_DTYPE
        self.seen.extend(reports)
        return reports

    def finals(self) -> dict[int, list[np.void]]:
        out: dict[int, list[np.void]] = {}
        for report in self.seen:
            if report["status"] != OrderStatus.NEW:
                out.setdefault(int(report["client_order_id"]), []).append(report)
        return out

    def run_until_final(self, ids: set[int]) -> None:
        """Feed ticks and poll, as the executor's loop does, until every id has ended."""
        def ended() -> bool:
            self.keep(self.venue.on_ticks(self.tick()))
            self.keep(self.venue.poll(reports_flushed=True))
            return ids <= set(self.finals())

        eventually(ended, timeout_s=self.timeout_s, interval_s=0.005,
                   message=f"final reports for {sorted(ids)}")


def _paper_order(coid: int) -> np.ndarray:
    row = np.zeros(1, dtype=INTENT_DTYPE)
    row["client_order_id"], row["tick_seq"], row["symbol_id"] = coid, 1, SYMBOL_ID
    row["side"], row["order_type"] = Side.BUY, OrderType.MARKET
    row["quantity"], row["limit_price"] = 0.5, 200.0
    return row


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    with running_localnet(tmp_path_factory.mktemp("localnet")) as net:
        yield net


@pytest.fixture(params=["paper", "solana"])
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    if request.param == "paper":
        venue: Venue = PaperVenue(ExecutorConfig())
        built = Case(venue, _paper_order, timeout_s=5.0, price=150.0)
    else:
        net: Localnet = request.getfixturevalue("localnet")
        venue = make_venue(net)
        built = Case(venue, lambda coid: solana_intent(coid, Side.BUY, 0.05, 200.0),
                     timeout_s=30.0, price=net.price[0])
    try:
        yield built
    finally:
        venue.close()


def _batch(case: Case, ids: list[int]) -> np.ndarray:
    return np.concatenate([case.order(coid) for coid in ids])


def test_every_submitted_intent_ends_in_exactly_one_final_report(case: Case) -> None:
    invalid = case.order(3)
    invalid["quantity"] = 0.0
    case.keep(case.venue.submit(np.concatenate([_batch(case, [1, 2]), invalid]), 7))
    assert [int(r["client_order_id"]) for r in case.seen] == [3], "the invalid one, at once"
    case.run_until_final({1, 2, 3})
    finals = case.finals()
    assert {coid: len(reports) for coid, reports in finals.items()} == {1: 1, 2: 1, 3: 1}
    assert finals[3][0]["reject_reason"] == RejectReason.INVALID_ORDER
    for coid in (1, 2):
        assert finals[coid][0]["status"] == OrderStatus.FILLED
        assert finals[coid][0]["filled_qty"] > 0
    for report in case.seen:
        assert report["send_ns"] == 7
    # Nothing is left: further calls report nothing.
    case.keep(case.venue.poll(reports_flushed=True))
    case.keep(case.venue.on_ticks(case.tick()))
    case.keep(case.venue.cancel_all(RejectReason.SHUTDOWN))
    assert {coid: len(reports) for coid, reports in case.finals().items()} == {1: 1, 2: 1, 3: 1}


def test_cancel_all_leaves_nothing_pending(case: Case) -> None:
    case.keep(case.venue.submit(_batch(case, [11, 12, 13]), 1))
    cancelled = case.keep(case.venue.cancel_all(RejectReason.SHUTDOWN))
    # Orders not yet at the market are withdrawn at once, each with the reason given.
    assert sorted(cancelled["client_order_id"].tolist()) == [11, 12, 13]
    assert set(cancelled["status"].tolist()) == {OrderStatus.CANCELLED}
    assert set(cancelled["reject_reason"].tolist()) == {RejectReason.SHUTDOWN}
    case.run_until_final({11, 12, 13})  # and nothing else ends them a second time
    case.keep(case.venue.poll(reports_flushed=True))
    assert len(case.keep(case.venue.cancel_all(RejectReason.SHUTDOWN))) == 0
    assert {coid: len(reports) for coid, reports in case.finals().items()} == \
        {11: 1, 12: 1, 13: 1}


def test_cancel_all_never_withdraws_an_order_that_may_still_execute(case: Case) -> None:
    """An order the venue has reported NEW (a signed transaction) stays pending through
    cancel_all and ends through poll; the paper venue never sends NEW, so it cancels all."""
    case.keep(case.venue.submit(case.order(21), 1))
    eventually(lambda: bool(len(case.keep(case.venue.poll(reports_flushed=True))))
               or isinstance(case.venue, PaperVenue), timeout_s=case.timeout_s)
    out_there = {int(r["client_order_id"]) for r in case.seen if r["status"] == OrderStatus.NEW}
    case.keep(case.venue.submit(case.order(22), 2))
    cancelled = case.keep(case.venue.cancel_all(RejectReason.SHUTDOWN))
    assert 22 in cancelled["client_order_id"].tolist()
    assert not out_there & set(cancelled["client_order_id"].tolist())
    case.run_until_final({21, 22})
    assert {coid: len(reports) for coid, reports in case.finals().items()} == {21: 1, 22: 1}
    if out_there:
        assert case.finals()[21][0]["status"] == OrderStatus.FILLED


def test_poll_and_reconciles_on_a_fresh_venue(case: Case) -> None:
    assert len(case.keep(case.venue.poll(reports_flushed=True))) == 0
    assert len(case.keep(case.venue.poll(reports_flushed=False))) == 0
    assert len(case.keep(case.venue.cancel_all(RejectReason.SHUTDOWN))) == 0
    # Nothing was held from before a restart: no intent is the venue's to reconcile.
    case.keep(case.venue.submit(case.order(31), 1))
    assert not case.venue.reconciles(31)
    assert not case.venue.reconciles(32)
    case.run_until_final({31})


def test_close_is_idempotent(case: Case) -> None:
    case.venue.close()
    case.venue.close()
    assert len(case.venue.cancel_all(RejectReason.SHUTDOWN)) == 0


def test_every_venue_implements_the_whole_contract() -> None:
    abstract = Venue.__abstractmethods__
    assert abstract == {"submit", "on_ticks", "poll", "reconciles", "cancel_all", "close"}
    from pipeline.executor.solana.venue import SolanaVenue
    for venue_class in (PaperVenue, SolanaVenue):
        assert issubclass(venue_class, Venue)
        assert not venue_class.__abstractmethods__
    with pytest.raises(TypeError):
        type("Partial", (Venue,), {"submit": lambda self, i, s: i})()  # type: ignore[abstract]

