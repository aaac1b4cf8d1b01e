"""The array validator gives exactly the per-tick answers, whatever the batching.

``Reference`` below is the per-tick validator as it was before it was vectorised (kept here,
compact, as the specification). Random tick streams with flat zero-volume runs, gaps, jumps,
impossible values, duplicates, out-of-order and stale times, two known symbols and an
unknown one are cut into batches at random places and fed to both; every batch's output
(ticks and flags), the counts and the order of the count callbacks must agree, both through
the tick-by-tick path for small batches and the array path for large ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest import validate
from pipeline.ingest.source_config import ValidationConfig
from pipeline.ingest.validate import FLAG_REASONS, REJECT_REASONS, VOLUME_SOURCES, TickValidator
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

S = 1_000_000_000
T0 = 1_700_000_000 * S
NOW_NS = T0 + 3_000 * S


@dataclass
class _State:
    last_ts_ns: int = -1
    last_price: float = math.nan
    jump_rejects: int = 0
    flat_run: int = 0


class Reference:
    """The per-tick rules of TickValidator before vectorisation (counts in call order)."""

    def __init__(self, config: ValidationConfig, symbols: list[int], check_age: bool) -> None:
        self.config, self.check_age = config, check_age
        self.states = {s: _State() for s in symbols}
        self.calls: list[tuple[str, str, int]] = []

    def validate(self, ticks: np.ndarray) -> np.ndarray:
        c = self.config
        keep = np.zeros(len(ticks), dtype=bool)
        suspect = np.zeros(len(ticks), dtype=bool)
        rejects: dict[str, int] = {}
        flags: dict[str, int] = {}
        for i, tick in enumerate(ticks.tolist()):
            _seq, _ingest, ts, price, size, symbol, source, _flags = tick
            state = self.states.get(symbol)
            reason = ""
            if not (math.isfinite(price) and math.isfinite(size)):
                reason = "not_finite"
            elif price <= 0.0 or size < 0.0:
                reason = "not_positive"
            elif state is None:
                reason = "unknown_symbol"
            elif ts == state.last_ts_ns:
                reason = "duplicate"
            elif ts < state.last_ts_ns:
                reason = "out_of_order"
            elif self.check_age and NOW_NS - ts > c.max_age_s * S:
                reason = "stale"
            if reason or state is None:
                rejects[reason] = rejects.get(reason, 0) + 1
                continue
            last = state.last_price
            if math.isfinite(last) and abs(price / last - 1.0) * 100.0 > c.max_jump_pct:
                state.jump_rejects += 1
                if state.jump_rejects < c.jump_reanchor_ticks:
                    rejects["jump"] = rejects.get("jump", 0) + 1
                    continue
                flags["reanchor"] = flags.get("reanchor", 0) + 1
                suspect[i] = True
            flat = source in VOLUME_SOURCES and size == 0.0 and price == last
            state.flat_run = state.flat_run + 1 if flat else 0
            if state.flat_run >= c.halt_flat_ticks:
                state.last_ts_ns = ts
                rejects["halt"] = rejects.get("halt", 0) + 1
                continue
            if state.last_ts_ns >= 0 and ts - state.last_ts_ns > c.max_gap_s * S:
                flags["gap"] = flags.get("gap", 0) + 1
                suspect[i] = True
            keep[i] = True
            state.last_ts_ns, state.last_price, state.jump_rejects = ts, price, 0
        self.calls += [("rejected", r, n) for r, n in rejects.items()]
        self.calls += [("flagged", r, n) for r, n in flags.items()]
        out = ticks[keep]
        out["flags"] |= np.where(suspect[keep], int(TickFlag.SUSPECT), 0).astype(np.uint16)
        return out


# One tick relative to the stream so far: (kind, time step in s, relative price move).
# Plain and flat ticks dominate, so that long stretches, halts and drifting prices occur.
RARE_KINDS = ("jump", "gap", "duplicate", "back", "nan", "inf", "zero", "negative",
              "bad_size", "unknown", "other_symbol", "stale", "far_back")
_kinds = st.one_of(st.just("normal"), st.just("flat"), st.sampled_from(RARE_KINDS))
_steps = st.lists(st.tuples(_kinds, st.integers(1, 90), st.floats(-0.08, 0.08)),
                  min_size=0, max_size=400)


def build(steps: list[tuple[str, int, float]], volume_source: int) -> np.ndarray:
    """A TICK_DTYPE stream from the step list (source times in ns, prices near 100)."""
    out = np.zeros(len(steps), dtype=TICK_DTYPE)
    ts, price = T0, 100.0
    for i, (kind, step_s, move) in enumerate(steps):
        tick_ts, tick_price, size, symbol = ts + step_s * S, price * (1.0 + move), 1.0, 1
        if kind == "flat":
            tick_price, size = price, 0.0
        elif kind == "jump":
            tick_price = price * (1.25 if move > 0 else 0.8)
        elif kind == "gap":
            tick_ts = ts + (200 + step_s * 10) * S
        elif kind == "duplicate":
            tick_ts = ts
        elif kind == "back":
            tick_ts = ts - step_s * S
        elif kind == "far_back":
            tick_ts = T0 - 10_000 * S
        elif kind == "stale":
            tick_ts = NOW_NS - 1_000 * S - step_s * S
        elif kind in ("nan", "inf", "zero", "negative"):
            tick_price = {"nan": math.nan, "inf": math.inf, "zero": 0.0, "negative": -1.0}[kind]
        elif kind == "bad_size":
            size = -1.0 if move > 0 else math.nan
        elif kind == "unknown":
            symbol = 9
        elif kind == "other_symbol":
            symbol = 2
        out[i] = (0, 0, tick_ts, tick_price, size, symbol, volume_source, 0)
        if kind not in ("back", "duplicate", "far_back", "stale", "unknown", "other_symbol"):
            ts = max(ts, tick_ts)
            if math.isfinite(tick_price) and tick_price > 0.0 and kind != "jump":
                price = tick_price
    return out


@dataclass(frozen=True)
class Setup:
    """Validator settings for one example."""

    config: ValidationConfig
    check_age: bool
    volume: bool  # the ticks come from a source with traded volume
    scalar_max: int  # batches up to this many ticks go tick by tick


_setups = st.builds(
    Setup,
    config=st.builds(ValidationConfig, halt_flat_ticks=st.integers(2, 6),
                     jump_reanchor_ticks=st.integers(1, 4),
                     max_gap_s=st.sampled_from([60.0, 300.0, 1e-9, 1e12]),
                     max_age_s=st.sampled_from([120.0, 2_500.0, 0.5])),
    check_age=st.booleans(), volume=st.booleans(), scalar_max=st.sampled_from([0, 32, 10**9]))


@settings(max_examples=1000, deadline=None)
@given(steps=_steps, cuts=st.lists(st.integers(1, 150), min_size=1, max_size=12),
       setup=_setups)
def test_same_answers_as_the_per_tick_rules(steps: list[tuple[str, int, float]],
                                            cuts: list[int], setup: Setup) -> None:
    config, check_age, volume, scalar_max = (setup.config, setup.check_age, setup.volume,
                                             setup.scalar_max)
    source = int(SourceId.REPLAY) if volume else int(SourceId.SYNTHETIC)
    stream = build(steps, source)
    calls: list[tuple[str, str, int]] = []
    fast = TickValidator(config, [1, 2], check_age=check_age,
                         on_count=lambda kind, reason, n: calls.append((kind, reason, n)),
                         unix_clock_ns=lambda: NOW_NS)
    slow = Reference(config, [1, 2], check_age)
    start, k = 0, 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validate, "SCALAR_MAX_TICKS", scalar_max)
        while start < len(stream):
            batch = stream[start:start + cuts[k % len(cuts)]]
            start, k = start + len(batch), k + 1
            expected = slow.validate(batch.copy())
            got = fast.validate(batch.copy())
            assert got.tobytes() == expected.tobytes()
    assert calls == slow.calls
    for kind, reasons, totals in (("rejected", REJECT_REASONS, fast.rejected),
                                  ("flagged", FLAG_REASONS, fast.flagged)):
        assert totals == {r: sum(n for c, rr, n in calls if c == kind and rr == r)
                          for r in reasons}


def test_a_year_sized_flat_run_halts_by_array() -> None:
    """45 flat zero-volume ticks inside a 2,000-tick batch: the 40th onwards halt, exactly."""
    steps = [("normal", 15, 0.001)] * 1000 + [("flat", 15, 0.0)] * 45 + [
        ("normal", 15, 0.001)] * 955
    stream = build(steps, int(SourceId.REPLAY))
    fast = TickValidator(ValidationConfig(), [1], check_age=False)
    slow = Reference(ValidationConfig(), [1], check_age=False)
    assert fast.validate(stream.copy()).tobytes() == slow.validate(stream.copy()).tobytes()
    assert fast.rejected["halt"] == 45 - ValidationConfig().halt_flat_ticks + 1


@pytest.mark.parametrize("cuts", [[6], [1, 5], [2, 4], [3, 3]])
def test_flat_runs_that_start_a_stretch_or_cross_batches(cuts: list[int]) -> None:
    """The run length carried into an array stretch counts the stretch's first tick."""
    stream = build([("normal", 15, 0.001)] + [("flat", 15, 0.0)] * 5, int(SourceId.REPLAY))
    config = ValidationConfig(halt_flat_ticks=2)
    fast = TickValidator(config, [1], check_age=False)
    slow = Reference(config, [1], check_age=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validate, "SCALAR_MAX_TICKS", 0)
        start = 0
        for cut in cuts:
            batch = stream[start:start + cut]
            start += cut
            assert fast.validate(batch.copy()).tobytes() == slow.validate(batch.copy()).tobytes()
    assert fast.rejected == {r: n for r, n in slow_counts(slow).items()}


def slow_counts(slow: Reference) -> dict[str, int]:
    """The reference's reject totals by reason."""
    return {r: sum(n for c, rr, n in slow.calls if c == "rejected" and rr == r)
            for r in REJECT_REASONS}


def test_halted_stretch_keeps_the_count_of_jump_rejects() -> None:
    """Only an accepted tick resets the jump count; halted ticks (even by array) do not."""
    kinds = ["normal", "flat", "jump", "flat", "flat", "flat", "jump", "jump", "normal"]
    stream = build([(k, 15, 0.01) for k in kinds], int(SourceId.REPLAY))
    config = ValidationConfig(halt_flat_ticks=2, jump_reanchor_ticks=3)
    fast = TickValidator(config, [1], check_age=False)
    slow = Reference(config, [1], check_age=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validate, "SCALAR_MAX_TICKS", 0)
        assert fast.validate(stream.copy()).tobytes() == slow.validate(stream.copy()).tobytes()
    assert fast.flagged["reanchor"] == 1


@pytest.mark.parametrize("max_age_s", [0.5, 120.0, 1e-9, 2.5e-9])
@pytest.mark.parametrize("offset_ns", [-2, -1, 0, 1, 2])
def test_age_limit_is_exact_to_the_nanosecond(max_age_s: float, offset_ns: int) -> None:
    """At the age limit the array path and the per-tick path agree to the nanosecond."""
    limit_ns = NOW_NS - math.floor(max_age_s * S)
    steps = [("normal", 15, 0.001)] * 40
    stream = build(steps, int(SourceId.REPLAY))
    stream["source_ts_ns"] = limit_ns + offset_ns + np.arange(40) - 20
    config = ValidationConfig(max_age_s=max_age_s)
    for scalar_max in (0, 10**9):
        fast = TickValidator(config, [1], check_age=True, unix_clock_ns=lambda: NOW_NS)
        slow = Reference(config, [1], check_age=True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(validate, "SCALAR_MAX_TICKS", scalar_max)
            got = fast.validate(stream.copy())
        assert got.tobytes() == slow.validate(stream.copy()).tobytes()
