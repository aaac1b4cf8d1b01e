"""The bench results as a plain-text table (the JSON holds the same figures)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _fig(f: Mapping[str, Any], digits: int = 2) -> str:
    return f"{f['median']:.{digits}f} ({f['min']:.{digits}f}-{f['max']:.{digits}f})"


def _lat(row: Mapping[str, Any]) -> str:
    return " | ".join(_fig(row[k], 0) if k in row else "-" for k in ("p50", "p99", "p99.9", "max"))


def format_table(results: Mapping[str, Any]) -> str:
    """Markdown-style tables, one per section; figures are median (min-max) over trials."""
    m = results["machine"]
    lines = [f"machine: {m['cpu_model']}, {m['usable_cores']} usable of {m['logical_cores']} "
             f"cores, Python {m['python']}; {results['trials']} trials per figure, "
             "median (min-max)", "",
             "a. one writer -> one reader process, every record checked (M records/s)",
             "| transport | M records/s |", "|---|---|"]
    lines += [f"| {k} | {v['skipped'] if 'skipped' in v else _fig(v)} |"
              for k, v in results["a_throughput"].items()]
    lines += ["", "b. one ring hop at 10,000 records/s, one-way latency (us)",
              "| reader waits by | p50 | p99 | p99.9 | max |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {_lat(v)} |" for k, v in results["b_hop_latency"].items()]
    lines += ["", "c. tick-to-order latency, ingest stamp to executor send (us)",
              "| chain | p50 | p99 | p99.9 | max |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {_lat(v)} |" for k, v in results["c_tick_to_order"].items()]
    lines += target_lines(results.get("c_targets", {}))
    d = results["d_sustained"]
    lines += ["", "d. sustained rates", "| what | rate |", "|---|---|",
              "| strategy, no overrun (ticks/s) | "
              f"{_fig(d['strategy_ticks_per_s_no_overrun'], 0)} |",
              f"| ledger, reports committed/s | {_fig(d['ledger_reports_per_s'], 0)} |",
              f"| ledger, commits/s (budget 500) | {_fig(d['ledger_commits_per_s'], 1)} |"]
    lines += ["", "e. peak RSS (MiB)", "| run | ingest | strategy | executor | ledger | "
              "whole pipeline |", "|---|---|---|---|---|---|"]
    for run, mem in results["e_peak_rss"].items():
        per = mem["per_process_mib"]
        cells = " | ".join(f"{per.get(n, 0.0):.0f}"
                           for n in ("ingest", "strategy", "executor", "ledger"))
        lines.append(f"| {run} | {cells} | {mem['pipeline_mib']:.0f} |")
    lines += ["", "f. backtest run phase: bundled candles repeated, through validation, "
              "strategy, risk and paper fills (run_backtest)",
              "| strategy | M candles/s |", "|---|---|"]
    lines += [f"| {k} | {_fig(v)} |" for k, v in results["f_backtest"].items()]
    command = results.get("f_backtest_command")
    if command:
        lines += ["", f"f2. the whole `pipeline backtest FILE --out DIR` command; input: "
                  f"{command['input']}",
                  "| file | wall s | candles/s end to end | peak RSS MiB | the command's "
                  "timing.json |", "|---|---|---|---|---|"]
        for fmt in ("json", "feather"):
            row = command[f"end_to_end_{fmt}"]
            lines.append(f"| {fmt} | {_fig(row['wall_s'])} | {_fig(row['candles_per_s'], 0)} "
                         f"| {_fig(row['peak_rss_mib'], 0)} | {_timing(row['timing'])} |")
        lines.append(f"run phase alone (run_backtest on loaded ticks): "
                     f"{_fig(command['run_phase_candles_per_s'], 0)} candles/s")
    return "\n".join(lines)


def target_lines(per_rate: Mapping[str, Any]) -> list[str]:
    """One line per rate: the ring pipeline against the same-work ZeroMQ pipeline."""
    from pipeline.bench.targets import verdict

    lines = []
    for rate, checks in per_rate.items():
        parts = []
        for name, check in checks.items():
            ring, limit = check["ring_us"], check["limit_us"]
            figures = (f" ({ring:.0f} vs {limit:.0f} us)"
                       if ring is not None and limit is not None else "")
            parts.append(f"{name}: {verdict(check['met'])}{figures}")
        lines.append(f"targets at {rate}, ring pipeline vs ZeroMQ pipeline (medians): "
                     + "; ".join(parts))
    return ["", *lines] if lines else []


def _timing(timing: Mapping[str, Any]) -> str:
    """The command's own timing file, whatever keys it has (numbers only)."""
    return ", ".join(f"{k}={v}" for k, v in timing.items() if isinstance(v, int | float))
