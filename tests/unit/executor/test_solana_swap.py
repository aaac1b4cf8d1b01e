"""The Solana venue against a real local venue: signed swaps settle atomically, once."""

from __future__ import annotations

from pathlib import Path

from localnet_kit import collect, finals, intent, make_venue, running_localnet, signatures_of
from solders.signature import Signature

from pipeline.records import OrderStatus, RejectReason, Side


def test_a_buy_settles_both_legs_in_one_signed_transaction(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        maker_before = net.tokens(net.world.maker.pubkey())
        venue = make_venue(net)
        try:
            assert not len(venue.submit(intent(1, Side.BUY, 2.0, 151.0), 0))
            reports = collect(venue, {1})
        finally:
            venue.close()
        new, = signatures_of(reports, OrderStatus.NEW)
        fill = finals(reports)[1]
        assert fill["status"] == OrderStatus.FILLED
        assert bytes(fill["venue_ref"]).decode() == new, "the NEW report names the signature"
        landed = net.chain.status(Signature.from_string(new))
        assert landed is not None
        assert landed.err is None
        after, maker_after = net.trader_tokens(), net.tokens(net.world.maker.pubkey())
        paid_usdt, got_sol = before["USDT"] - after["USDT"], after["SOL"] - before["SOL"]
        assert paid_usdt == round(2.0 * 150.0 * 1e6)
        assert got_sol > 0
        assert maker_after["SOL"] == maker_before["SOL"] - got_sol
        assert maker_after["USDT"] == maker_before["USDT"] + paid_usdt
        assert abs(float(fill["filled_qty"]) - got_sol / 1e9) < 1e-12
        assert abs(float(fill["avg_price"]) * got_sol / 1e9 - 300.0) < 1e-6


def test_equal_orders_get_distinct_transactions_and_fills(tmp_path: Path) -> None:
    """Two identical orders in one block must not share bytes (hence one signature)."""
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        venue = make_venue(net)
        try:
            for coid in (1, 2, 3):
                venue.submit(intent(coid, Side.SELL, 1.0, 140.0), 0)
            reports = collect(venue, {1, 2, 3})
        finally:
            venue.close()
        fills = signatures_of(reports, OrderStatus.FILLED)
        assert len(fills) == 3
        assert len(set(fills)) == 3
        assert before["SOL"] - net.trader_tokens()["SOL"] == 3 * 10**9


def test_a_failing_leg_changes_nothing_and_is_not_a_fill(tmp_path: Path) -> None:
    """The trader holds 10 SOL: selling 50 fails its first leg, so neither leg moves."""
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        maker_before = net.tokens(net.world.maker.pubkey())
        venue = make_venue(net)
        try:
            venue.submit(intent(7, Side.SELL, 50.0, 100.0), 0)
            reports = collect(venue, {7})
        finally:
            venue.close()
        final = finals(reports)[7]
        assert final["status"] == OrderStatus.REJECTED
        assert final["reject_reason"] == RejectReason.VENUE_ERROR
        assert signatures_of(reports, OrderStatus.NEW) == [], "refused before signing"
        assert net.trader_tokens() == before
        assert net.tokens(net.world.maker.pubkey()) == maker_before


def test_a_limit_beyond_the_quote_is_refused_as_not_marketable(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        venue = make_venue(net)
        try:
            venue.submit(intent(9, Side.SELL, 1.0, 160.0), 0)  # maker bids ~149.85
            reports = collect(venue, {9})
        finally:
            venue.close()
        assert finals(reports)[9]["reject_reason"] == RejectReason.LIMIT_NOT_MARKETABLE
        assert net.trader_tokens() == before
