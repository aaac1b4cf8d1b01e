"""reports_from_intents copies identity, order and latency stamps from each intent."""

from __future__ import annotations

import numpy as np

from pipeline.executor.venue import COPIED_FIELDS, reports_from_intents
from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, OrderStatus, RejectReason, Side


def test_copies_intent_fields_and_sets_status() -> None:
    intents = np.zeros(2, dtype=INTENT_DTYPE)
    intents["client_order_id"] = [11, 12]
    intents["tick_seq"] = [5, 6]
    intents["tick_ingest_ns"] = [100, 200]
    intents["decision_ns"] = [150, 250]
    intents["quantity"] = [1.5, 2.5]
    intents["limit_price"] = [150.0, 149.0]
    intents["symbol_id"] = [1, 2]
    intents["side"] = [Side.BUY, Side.SELL]
    reports = reports_from_intents(intents, np.array([300, 400]), OrderStatus.CANCELLED,
                                   RejectReason.SHUTDOWN)
    assert reports.dtype == REPORT_DTYPE
    for name in COPIED_FIELDS:
        np.testing.assert_array_equal(reports[name], intents[name])
    np.testing.assert_array_equal(reports["send_ns"], [300, 400])
    assert set(reports["status"]) == {OrderStatus.CANCELLED}
    assert set(reports["reject_reason"]) == {RejectReason.SHUTDOWN}
    assert not reports["filled_qty"].any()
    assert not reports["venue_ts_ns"].any()


def test_scalar_send_ns_and_empty_input() -> None:
    reports = reports_from_intents(np.zeros(3, INTENT_DTYPE), 77, OrderStatus.REJECTED)
    assert list(reports["send_ns"]) == [77, 77, 77]
    assert set(reports["reject_reason"]) == {RejectReason.NONE}
    assert len(reports_from_intents(np.zeros(0, INTENT_DTYPE), 1, OrderStatus.FILLED)) == 0
