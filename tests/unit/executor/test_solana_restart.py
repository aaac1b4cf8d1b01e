"""After a crash between send and confirmation the venue reconciles by signature.

A first venue signs and sends while blocks are paused, then dies (closed without a final
report, as a kill -9 leaves it). A second venue gets the same intent again with the ledger's
NEW signatures for it (with their lastValidBlockHeight): it must report the outcome of
whichever transaction landed and never sign again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from localnet_kit import (
    collect,
    finals,
    intent,
    make_venue,
    running_localnet,
    signatures_of,
    signed_of,
)
from solders.signature import Signature
from testkit import eventually

from pipeline.executor.solana.venue import SolanaVenue
from pipeline.ledger.inflight import Signed
from pipeline.records import OrderStatus, ReportDetail, Side


def _sign_and_die(venue: SolanaVenue, order: np.ndarray,
                  sent: Callable[[str], bool]) -> Signed:
    seen: list[np.ndarray] = []
    venue.submit(order, 0)

    def signed() -> bool:
        seen.extend(venue.poll(reports_flushed=True))
        return bool(signatures_of(seen, OrderStatus.NEW))

    eventually(signed, timeout_s=20, message="the NEW report")
    # The executor wrote the NEW report to the ring; the next poll releases the send.
    venue.poll(reports_flushed=True)
    signed = signed_of(seen)[0]
    assert signed.last_valid_height > 0, "the NEW report carries lastValidBlockHeight"
    eventually(lambda: sent(signed.signature), timeout_s=20,
               message="the transaction was sent")
    venue.close()
    return signed


def test_a_restart_reports_the_fill_of_the_transaction_sent_before_the_crash(
        tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        order = intent(5, Side.SELL, 1.0, 100.0)
        net.admin({"paused": True})
        signed = _sign_and_die(make_venue(net), order,
                               lambda sig: net.chain.queued(Signature.from_string(sig)))
        signature = signed.signature
        # An earlier transaction of the same order that expired unsent comes first: every
        # signature is looked up, not only the first the ledger holds.
        expired = Signed(str(Signature.new_unique()), signed.last_valid_height - 150)
        second = make_venue(net, in_flight=lambda: {5: [expired, signed]})
        try:
            second.submit(order, 0)
            net.admin({"paused": False})
            reports = collect(second, {5})
        finally:
            second.close()
        assert signatures_of(reports, OrderStatus.NEW) == [], "not signed again"
        assert finals(reports)[5]["status"] == OrderStatus.FILLED
        assert signatures_of(reports, OrderStatus.FILLED) == [signature]
        assert before["SOL"] - net.trader_tokens()["SOL"] == 10**9, "one swap"


def test_after_a_restart_a_landed_swap_the_rpc_never_serves_is_measured_from_the_wallet(
        tmp_path: Path) -> None:
    """getTransaction answers -32601 (a provider that restricts history): the restarted
    venue books the fill from the wallet's change across the swap, against the balances the
    NEW report carried from before the signing."""
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        order = intent(6, Side.SELL, 1.0, 100.0)
        net.admin({"paused": True})
        signed = _sign_and_die(make_venue(net), order,
                               lambda sig: net.chain.queued(Signature.from_string(sig)))
        assert signed.wallet[0] > 0, "the NEW report kept the wallet before signing"
        assert signed.message_fee > 0
        net.admin({"faults": [{"kind": "method_not_found", "count": 10_000,
                               "method": "getTransaction"}]})
        second = make_venue(net, in_flight=lambda: {6: [signed]})
        try:
            second.submit(order, 0)
            net.admin({"paused": False})
            reports = collect(second, {6})
        finally:
            second.close()
        fill = finals(reports)[6]
        assert fill["status"] == OrderStatus.FILLED
        assert fill["detail"] == ReportDetail.FROM_BALANCE_CHANGE
        sold = before["SOL"] - net.trader_tokens()["SOL"]
        got = net.trader_tokens()["USDT"] - before["USDT"]
        assert sold == 10**9
        assert float(fill["filled_qty"]) == 1.0
        assert abs(float(fill["avg_price"]) - got / 1e6) < 1e-9
        assert round(float(fill["network_fee"]) * 1e9) == signed.message_fee


def test_a_stale_order_whose_transaction_expired_ends_unfilled_and_is_not_resigned(
        tmp_path: Path) -> None:
    """The send before the crash never reached the chain (a failed send): the second venue
    waits past the old blockhash's lifetime, then ends the order unfilled; it never signs a
    second transaction for an intent from before the crash, even with trading disabled."""
    with running_localnet(tmp_path, block_interval_s=0.01) as net:
        before = net.trader_tokens()
        order = intent(6, Side.SELL, 1.0, 100.0)
        net.admin({"faults": [{"kind": "500", "count": 1000, "method": "sendTransaction"}]})
        signed = _sign_and_die(make_venue(net), order,
                               lambda _sig: net.admin({})["faults_served"] > 0)
        signature = signed.signature
        net.admin({"clear_faults": True})
        second = make_venue(net, in_flight=lambda: {6: [signed]})
        try:
            assert second.reconciles(6)
            assert not second.reconciles(7)
            assert not len(second.submit(order, 0))
            reports = collect(second, {6}, timeout_s=60)
        finally:
            second.close()
        assert signatures_of(reports, OrderStatus.NEW) == []
        final = finals(reports)[6]
        assert final["status"] == OrderStatus.REJECTED
        assert bytes(final["venue_ref"]).decode() == ""
        assert net.chain.status(Signature.from_string(signature)) is None
        assert net.chain.height > signed.last_valid_height, "ended only after the expiry"
        assert net.trader_tokens() == before
