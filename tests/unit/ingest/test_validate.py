"""Tick validation: each rule rejects or flags, counts by reason, logs once per burst."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.ingest.source_config import ValidationConfig
from pipeline.ingest.validate import BurstLog, TickValidator
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

S = 1_000_000_000
T0 = 1_746_372_780 * S


def ticks(prices: list[float], *, step_s: float = 15.0, sizes: list[float] | None = None,
          symbol: int = 1, start_ns: int = T0, source: SourceId = SourceId.REPLAY) -> np.ndarray:
    out = np.zeros(len(prices), dtype=TICK_DTYPE)
    out["price"] = prices
    out["size"] = sizes if sizes is not None else 1.0
    out["source_ts_ns"] = start_ns + (np.arange(len(prices)) * step_s * S).astype(np.int64)
    out["symbol_id"] = symbol
    out["source_id"] = int(source)
    return out


def validator(**kwargs: object) -> TickValidator:
    return TickValidator(ValidationConfig(**kwargs), [1, 2], check_age=False)  # type: ignore[arg-type]


def test_clean_batches_pass_unchanged_across_calls() -> None:
    v = validator()
    first = ticks([100.0, 100.5, 101.0])
    assert v.validate(first) is first
    second = ticks([101.2, 101.1], start_ns=T0 + 60 * S)
    assert len(v.validate(second)) == 2
    assert sum(v.rejected.values()) == sum(v.flagged.values()) == 0


@pytest.mark.parametrize(("price", "size", "reason"), [
    (float("nan"), 1.0, "not_finite"), (float("inf"), 1.0, "not_finite"),
    (100.0, float("nan"), "not_finite"), (0.0, 1.0, "not_positive"),
    (-5.0, 1.0, "not_positive"), (100.0, -1.0, "not_positive")])
def test_impossible_values_are_rejected(price: float, size: float, reason: str) -> None:
    v = validator()
    batch = ticks([100.0, price, 100.2], sizes=[1.0, size, 1.0])
    out = v.validate(batch)
    assert out["price"].tolist() == [100.0, 100.2]
    assert v.rejected[reason] == 1


def test_unknown_symbol_duplicate_and_out_of_order_are_rejected() -> None:
    v = validator()
    v.validate(ticks([100.0, 100.1]))
    assert len(v.validate(ticks([100.0], symbol=9))) == 0
    assert len(v.validate(ticks([100.2], start_ns=T0 + 15 * S))) == 0  # same time as last
    assert len(v.validate(ticks([100.2], start_ns=T0))) == 0  # older
    assert (v.rejected["unknown_symbol"], v.rejected["duplicate"],
            v.rejected["out_of_order"]) == (1, 1, 1)


def test_stale_ticks_are_rejected_only_when_age_is_checked() -> None:
    now = T0 + 600 * S
    live = TickValidator(ValidationConfig(max_age_s=120.0), [1], check_age=True,
                         unix_clock_ns=lambda: now)
    out = live.validate(ticks([100.0, 100.1], start_ns=now - 200 * S, step_s=100.0))
    assert out["source_ts_ns"].tolist() == [now - 100 * S]
    assert live.rejected["stale"] == 1
    replay = TickValidator(ValidationConfig(), [1], check_age=False, unix_clock_ns=lambda: now)
    assert len(replay.validate(ticks([100.0, 100.1], start_ns=T0 - 10**6 * S))) == 2


def test_jump_is_rejected_then_reanchored_after_confirmation() -> None:
    v = validator(max_jump_pct=5.0, jump_reanchor_ticks=3)
    out = v.validate(ticks([100.0, 120.0, 100.5, 121.0, 122.0, 123.0, 123.5]))
    assert out["price"].tolist() == [100.0, 100.5, 123.0, 123.5]
    assert v.rejected["jump"] == 3
    assert v.flagged["reanchor"] == 1
    assert out["flags"].tolist() == [0, 0, TickFlag.SUSPECT, 0]


def test_gap_flags_the_first_tick_after_it() -> None:
    v = validator(max_gap_s=300.0)
    v.validate(ticks([100.0]))
    out = v.validate(ticks([100.1, 100.2], start_ns=T0 + 3600 * S))
    assert out["flags"].tolist() == [TickFlag.SUSPECT, 0]
    assert v.flagged["gap"] == 1


def test_long_flat_zero_volume_run_is_a_halt() -> None:
    v = validator(halt_flat_ticks=4)
    prices = [100.0] + [100.0] * 6 + [100.3]
    sizes = [1.0] + [0.0] * 6 + [2.0]
    out = v.validate(ticks(prices, sizes=sizes))
    assert len(out) == 5  # the first tick, 3 flat ones, then the real print
    assert v.rejected["halt"] == 3
    # Sources without volume (size 0 always) are never judged halted.
    pyth = validator(halt_flat_ticks=4)
    assert len(pyth.validate(ticks([100.0] * 8, sizes=[0.0] * 8, source=SourceId.PYTH))) == 8


def test_counts_go_to_the_callback_and_the_log_speaks_once_per_burst(
        caplog: pytest.LogCaptureFixture) -> None:
    counted: list[tuple[str, str, int]] = []
    now = [0.0]
    log = BurstLog(logging.getLogger("test.validate"), quiet_s=10.0, clock_s=lambda: now[0])
    v = TickValidator(ValidationConfig(), [1], check_age=False, log=log,
                      on_count=lambda kind, reason, n: counted.append((kind, reason, n)))
    with caplog.at_level(logging.WARNING, logger="test.validate"):
        for i in range(5):
            v.validate(ticks([float("nan")] * 3, start_ns=T0 + i * S))
            now[0] += 1.0
        now[0] += 60.0
        v.validate(ticks([float("nan")], start_ns=T0 + 100 * S))
    assert counted == [("rejected", "not_finite", 3)] * 5 + [("rejected", "not_finite", 1)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "12 in the previous burst" in lines[1]


def test_disabled_validation_passes_everything() -> None:
    v = validator(enabled=False)
    assert len(v.validate(ticks([float("nan"), -1.0]))) == 2
