"""The venue rides through a flaky RPC and an expiring blockhash without sending twice.

Faults are injected through the localnet's ``POST /admin``, as an operator's drill would:
HTTP 429 and 500, JSON-RPC errors, answers slower than the client's timeout, paused block
production, and sends that never reach the chain until the blockhash has expired.
"""

from __future__ import annotations

from pathlib import Path

from localnet_kit import (
    collect,
    fast_config,
    finals,
    intent,
    make_venue,
    running_localnet,
    signatures_of,
)
from prometheus_client import CollectorRegistry
from solders.signature import Signature
from testkit import eventually

from pipeline.records import OrderStatus, Side


def _retries(registry: CollectorRegistry, call: str) -> float:
    return registry.get_sample_value("pipeline_solana_rpc_retries_total", {"call": call}) or 0.0


def test_429_500_rpc_errors_and_timeouts_are_retried_and_the_order_fills_once(
        tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        answer = net.admin({"faults": [
            {"kind": "429", "count": 2, "method": "simulateTransaction"},
            {"kind": "500", "count": 2, "method": "getSignatureStatuses"},
            {"kind": "error", "count": 2, "method": "getTransaction"},
            {"kind": "delay", "count": 1, "method": "getSignatureStatuses", "delay_s": 1.5},
        ]})
        assert answer["faults_pending"] == 4
        registry = CollectorRegistry()
        venue = make_venue(net, config=fast_config(rpc_timeout_s=0.5), registry=registry)
        try:
            venue.submit(intent(1, Side.SELL, 1.0, 100.0), 0)
            reports = collect(venue, {1})
        finally:
            venue.close()
        assert finals(reports)[1]["status"] == OrderStatus.FILLED
        assert net.admin({})["faults_served"] == 7, "every injected fault was hit"
        for call in ("simulateTransaction", "getTransaction"):
            assert _retries(registry, call) == 2, call
        assert _retries(registry, "getSignatureStatuses") == 3, "two 500s and one timeout"
        assert len(signatures_of(reports, OrderStatus.NEW)) == 1, "signed once"
        assert before["SOL"] - net.trader_tokens()["SOL"] == 10**9, "settled once"


def test_a_transaction_sent_while_blocks_are_paused_lands_once_when_they_resume(
        tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        before = net.trader_tokens()
        venue = make_venue(net)
        seen = []
        try:
            net.admin({"paused": True})
            venue.submit(intent(1, Side.SELL, 1.0, 100.0), 0)

            def signed() -> bool:
                seen.extend(venue.poll(reports_flushed=True))
                return bool(signatures_of(seen, OrderStatus.NEW))

            eventually(signed, timeout_s=20, message="the NEW report with the signature")
            signature = Signature.from_string(signatures_of(seen, OrderStatus.NEW)[0])
            assert net.chain.status(signature) is None, "no block, no status"
            net.admin({"paused": False})
            seen += collect(venue, {1})
        finally:
            venue.close()
        assert finals(seen)[1]["status"] == OrderStatus.FILLED
        assert signatures_of(seen, OrderStatus.FILLED) == [str(signature)]
        assert before["SOL"] - net.trader_tokens()["SOL"] == 10**9


def test_an_expired_blockhash_leads_to_one_new_transaction_and_one_fill(tmp_path: Path) -> None:
    """The first transaction never reaches the chain (its send fails, and the retry comes
    after the 10-block window has passed) and its blockhash expires; only then is a second
    one built, signed and sent."""
    with running_localnet(tmp_path, window_blocks=10) as net:
        before = net.trader_tokens()
        net.admin({"faults": [{"kind": "error", "count": 1, "method": "sendTransaction"}]})
        venue = make_venue(net, config=fast_config(resend_interval_s=30.0, backoff_s=2.0))
        try:
            venue.submit(intent(1, Side.SELL, 1.0, 100.0), 0)
            reports = collect(venue, {1})
        finally:
            venue.close()
        first, second = signatures_of(reports, OrderStatus.NEW)
        assert first != second
        assert net.chain.status(Signature.from_string(first)) is None, "expired, never landed"
        landed = net.chain.status(Signature.from_string(second))
        assert landed is not None
        assert landed.err is None
        assert signatures_of(reports, OrderStatus.FILLED) == [second]
        assert before["SOL"] - net.trader_tokens()["SOL"] == 10**9, "one swap, not two"
