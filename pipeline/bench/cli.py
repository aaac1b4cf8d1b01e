"""``pipeline bench``: every section of the benchmark in one run, a table and a JSON file.

Sections (see each module): a. ring vs multiprocessing.Queue, ZeroMQ and faster-fifo
throughput (:mod:`.throughput`); b. one ring hop's latency (:mod:`.hop`); c. the real
pipeline's tick-to-order latency (:mod:`.live`) beside the same work over ZeroMQ
(:mod:`.zmq_pipeline`) and a lighter ZeroMQ chain (:mod:`.zmq_chain`), judged against the
targets (:mod:`.targets`);
d. sustained tick rate and ledger report rate (:mod:`.sustained`); e. peak RSS
(:mod:`.live`); f. backtest speed (:mod:`.backtest`). ``--quick`` shrinks every size so the
whole run takes about a minute (a CI smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig


@dataclass(frozen=True)
class Plan:
    """Sizes of one bench run."""

    trials: int
    scale: float  # of the record counts in section a
    hop_s: float
    live_s: float
    sustained_s: float
    ledger_reports: int
    backtest_repeat: int
    year_candles: int  # candles in the file given to the whole `pipeline backtest` command


FULL = Plan(trials=3, scale=1.0, hop_s=2.0, live_s=6.0, sustained_s=1.0, ledger_reports=60_000,
            backtest_repeat=25, year_candles=525_600)
QUICK = Plan(trials=2, scale=0.1, hop_s=0.3, live_s=1.0, sustained_s=0.2,
             ledger_reports=5_000, backtest_repeat=2, year_candles=20_000)
LIVE_RATES_HZ = (1_000, 10_000)
SUSTAINED_RATES_HZ = [50_000.0, 100_000.0, 200_000.0, 400_000.0, 800_000.0, 1_600_000.0]
HOP_MODES = {"pipeline wait (spin 200 us, then doorbell)": 200,
             "doorbell only (spin 0)": 0, "busy-poll": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, about a minute: checks the benchmark works")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results here")


def run(args: argparse.Namespace, _config: PipelineConfig) -> int:
    from pipeline.bench.report import format_table

    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    results = measure(plan, progress=lambda text: print(f"  ... {text}", flush=True))
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["quick"] = bool(args.quick)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 0


def measure(plan: Plan, progress: Any) -> dict[str, Any]:
    """Run every section; a JSON-ready dict of figures (median, min, max per figure)."""
    from pipeline.bench import backtest, hop, sustained, targets
    from pipeline.bench.stats import Figure, latency_percentiles_us, machine_info, repeat

    out: dict[str, Any] = {"machine": machine_info(), "trials": plan.trials}
    progress("a. throughput")
    out["a_throughput"] = throughput_section(plan)
    progress("b. one ring hop at 10,000 records/s")
    out["b_hop_latency"] = {
        mode: _figures([latency_percentiles_us(hop.hop_trial(10_000, plan.hop_s, spin))
                        for _ in range(plan.trials)]) for mode, spin in HOP_MODES.items()}
    out["c_tick_to_order"], memory = tick_to_order_section(plan, progress)
    out["c_targets"] = {f"{rate} ticks/s": targets.judge(out["c_tick_to_order"], rate)
                        for rate in LIVE_RATES_HZ}
    progress("d. sustained strategy rate and ledger commits")
    out["d_sustained"] = {
        "strategy_ticks_per_s_no_overrun": repeat(
            plan.trials, lambda: sustained.max_sustained_rate(SUSTAINED_RATES_HZ,
                                                              plan.sustained_s),
            "ticks/s").as_dict(),
    }
    ledger = [sustained.ledger_rates(plan.ledger_reports) for _ in range(plan.trials)]
    out["d_sustained"]["ledger_reports_per_s"] = Figure.of(
        [r for r, _ in ledger], "reports/s").as_dict()
    out["d_sustained"]["ledger_commits_per_s"] = Figure.of(
        [c for _, c in ledger], "commits/s").as_dict()
    out["e_peak_rss"] = memory
    progress("f. backtest")
    out["f_backtest"] = {name: Figure.of(
        [backtest.backtest_trial(name, plan.backtest_repeat) / 1e6 for _ in range(plan.trials)],
        "M candles/s").as_dict() for name in ("ema_cross", "zscore")}
    out["f_backtest_command"] = backtest.year_backtest(plan.year_candles, plan.trials, progress)
    return out


def throughput_section(plan: Plan) -> dict[str, Any]:
    """Section a: every transport, one record and 256 records per send; a transport whose
    optional library is missing gets a ``skipped`` note instead of figures."""
    from pipeline.bench import throughput
    from pipeline.bench.stats import Figure

    section: dict[str, Any] = {}
    for name, (trial, single_n) in throughput.TRANSPORTS.items():
        skipped = throughput.unavailable(name)
        for batched in (False, True):
            key = f"{name}, {'256 per send' if batched else '1 per send'}"
            if skipped:
                section[key] = {"skipped": skipped}
                continue
            n = max(1000, int(single_n * plan.scale * (40 if batched else 1)))
            rates = [trial(n, batched) / 1e6 for _ in range(plan.trials)]
            section[key] = Figure.of(rates, "M records/s").as_dict()
    return section


def tick_to_order_section(plan: Plan, progress: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Section c per rate: the ring pipeline, the same-work ZeroMQ pipeline and the lighter
    ZeroMQ chain; and section e, the ring pipeline's memory."""
    from pipeline.bench import live, targets, zmq_chain, zmq_pipeline

    section: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    for rate in LIVE_RATES_HZ:
        progress(f"c. real pipeline at {rate} ticks/s")
        result = live.run_live(rate, plan.live_s, plan.trials)
        section[targets.ring_row(rate)] = {"orders": result.orders, **_figures(result.windows)}
        memory[f"{rate} ticks/s"] = {"per_process_mib": result.peak_rss_mib,
                                     "pipeline_mib": result.pipeline_peak_rss_mib}
        progress(f"c. ZeroMQ pipeline at {rate} ticks/s")
        same = zmq_pipeline.run_zmq_pipeline(rate, plan.live_s, plan.trials)
        section[targets.zmq_pipeline_row(rate)] = {"orders": same.orders,
                                                   **_figures(same.windows)}
        progress(f"c. ZeroMQ chain at {rate} ticks/s")
        section[targets.zmq_chain_row(rate)] = _figures(
            zmq_chain.run_zmq_chain(rate, plan.live_s, plan.trials))
    return section, memory


def _figures(trials: list[dict[str, float]]) -> dict[str, Any]:
    from pipeline.bench.stats import latency_figures

    return {k: f.as_dict() for k, f in latency_figures(trials).items()}
