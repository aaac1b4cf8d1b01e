"""The admin commands that talk to running processes; each returns an exit code.

Exit codes: 0 done; 1 the pipeline refused the request (the reply's code is printed);
3 a process is down, hung or unreachable (said in one line, after a bounded wait).
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TextIO

from pipeline.admin.client import AdminClient, ProcessDown, RequestRefused
from pipeline.admin.readonly import format_table
from pipeline.config import PROCESSES
from pipeline.control import EventSubscriber
from pipeline.killswitch import KillSwitchMessage

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_DOWN: Final = 3


def _calls(client: AdminClient, processes: Sequence[str], cmd: str,
           args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``cmd`` on several processes at once (so the wait is bounded once, not per process);
    each value is the result or the exception."""
    def one(process: str) -> Any:
        try:
            return client.call(process, cmd, args)
        except (ProcessDown, RequestRefused) as exc:
            return exc
    with ThreadPoolExecutor(max_workers=len(processes)) as pool:
        return dict(zip(processes, pool.map(one, processes), strict=True))


def _report(results: Mapping[str, Any], show: Callable[[str, Any], str],
            out: TextIO) -> int:
    code = EXIT_OK
    for process, result in results.items():
        if isinstance(result, ProcessDown):
            print(f"{process}: DOWN: {result}", file=out)
            code = max(code, EXIT_DOWN)
        elif isinstance(result, RequestRefused):
            print(f"{process}: refused: {result}", file=out)
            code = max(code, EXIT_REFUSED)
        else:
            print(show(process, result), file=out)
    return code


def _detail(process: str, body: Mapping[str, Any]) -> str:
    keys = {"ingest": ("ticks", "ticks_per_s", "feed_exhausted"),
            "strategy": ("ticks", "intents", "withheld", "paused"),
            "executor": ("orders", "fills", "rejects", "trade_enabled"),
            "ledger": ("reports", "fills", "trade_enabled")}[process]
    detail = " ".join(f"{k}={body[k]}" for k in keys if k in body)
    paused = body.get("paused_symbols") or []  # the strategy's, after venue refusals
    if paused:
        detail += " paused_symbols=" + ",".join(
            f"{p.get('symbol')}({p.get('reason')} x{p.get('streak')})" for p in paused)
    return detail


def status(client: AdminClient, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """One table of all four processes; down ones say so and make the exit non-zero."""
    results = _calls(client, PROCESSES, "status")
    if as_json:
        print(json.dumps({p: r if not isinstance(r, Exception) else {"error": str(r)}
                          for p, r in results.items()}, sort_keys=True), file=out)
    else:
        rows = []
        for process, body in results.items():
            if isinstance(body, Exception):
                rows.append((process, "DOWN", "-", "-", "-", "-", str(body)))
                continue
            lag = sum(r.get("lag", 0) for r in body.get("rings", {}).values())
            rows.append((process, body.get("state"), body.get("pid"),
                         f"{body.get('uptime_s', 0):.0f}s", body.get("config_version"), lag,
                         _detail(process, body)))
        print(format_table(["process", "state", "pid", "uptime", "config", "lag", "detail"],
                           rows), file=out)
        print(trading_line(results), file=out)
    return max((EXIT_DOWN if isinstance(r, ProcessDown) else EXIT_REFUSED
                if isinstance(r, RequestRefused) else EXIT_OK) for r in results.values())


def _reasons(state: Mapping[str, Any]) -> str:
    return "enabled" if state.get("enabled") else \
        f"HALTED ({', '.join(state.get('reasons') or ['unknown'])})"


def trading_line(results: Mapping[str, Any]) -> str:
    """One line: the ledger's trading state and reasons, who publishes it, and where a
    reader sees something else (a segment it cannot trust) or the strategy is paused."""
    ledger = results.get("ledger")
    if not isinstance(ledger, Mapping):
        line = "trading: unknown (the ledger is not answering; readers halt when its state " \
               "goes stale)"
    else:
        state = ledger.get("trading") or {}
        line = (f"trading: {_reasons(state)}; published by ledger pid {ledger.get('pid')} "
                f"({ledger.get('state')})")
        if ledger.get("kill_switch_pending"):
            line += "; disable not yet in the database"
    executor = results.get("executor")
    if isinstance(executor, Mapping) and isinstance(executor.get("trading"), Mapping):
        seen = executor["trading"]
        if not isinstance(ledger, Mapping) or \
                _reasons(seen) != _reasons(ledger.get("trading") or {}):
            line += f"; executor sees {_reasons(seen)}"
            if seen.get("problem"):
                line += f": {seen['problem']}"
        elif seen.get("written_age_s") is not None:
            line += f", written {seen['written_age_s']:.1f} s ago"
    strategy = results.get("strategy")
    if isinstance(strategy, Mapping):
        if strategy.get("paused"):
            line += "; strategy paused by the operator"
        if strategy.get("withheld"):
            line += f"; strategy withheld {strategy['withheld']} intents"
    return line


def ping(client: AdminClient, processes: Sequence[str], out: TextIO = sys.stdout) -> int:
    started = time.perf_counter()
    results = _calls(client, processes, "ping")
    elapsed_ms = (time.perf_counter() - started) * 1000
    return _report(results, lambda p, _r: f"{p}: pong ({elapsed_ms:.1f} ms)", out)


def simple(client: AdminClient, processes: Sequence[str], cmd: str,
           out: TextIO = sys.stdout, *, args: Mapping[str, Any] | None = None) -> int:
    """pause, resume, reload: print each process's result."""
    results = _calls(client, processes, cmd, args)
    return _report(results, lambda p, r: f"{p}: {cmd}: {json.dumps(r, sort_keys=True)}", out)


def set_trading(client: AdminClient, value: bool, message: KillSwitchMessage | None, *,
                signatures: list[dict[str, str]], reason: str,
                out: TextIO = sys.stdout) -> int:
    """Ask the ledger to enable or disable trading; print what it committed."""
    args: dict[str, Any] = {"operator": getpass.getuser(), "reason": reason,
                            "signatures": signatures}
    if message is not None:
        args.update(message.to_args())
    cmd = "trade.enable" if value else "trade.disable"
    results = {"ledger": _single(client, "ledger", cmd, args)}
    return _report(results, lambda _p, r: (
        f"trading {'ENABLED' if value else 'DISABLED'} (was "
        f"{'enabled' if r.get('previous') == 'true' else 'disabled'}); signers: "
        f"{', '.join(r.get('signers') or []) or 'local operator'}; committed_ns="
        f"{r.get('committed_ns')}"
        + ("" if r.get("durable", True) else "; in force now, not yet in the database "
           "(it cannot write; the ledger retries)")), out)


def _single(client: AdminClient, process: str, cmd: str, args: Mapping[str, Any]) -> Any:
    try:
        return client.call(process, cmd, args)
    except (ProcessDown, RequestRefused) as exc:
        return exc


def balances_reopen(client: AdminClient, reason: str, out: TextIO = sys.stdout) -> int:
    result = _single(client, "ledger", "balances.reopen",
                     {"operator": getpass.getuser(), "reason": reason})
    return _report({"ledger": result}, lambda _p, r: (
        "the ledger re-opens its balances at the next chain reading; trading stays "
        f"{'enabled' if r.get('trade_enabled') else 'disabled'}"), out)


def config_get(client: AdminClient, key: str | None, out: TextIO = sys.stdout) -> int:
    result = _single(client, "ledger", "config.get", {"key": key} if key else {})
    return _report({"ledger": result},
                   lambda _p, r: "\n".join(f"{k} = {v['value']}  (updated {v['updated_at']})"
                                           for k, v in sorted(r.items())), out)


def watch(client: AdminClient, *, topics: Sequence[str], timeout_s: float,
          duration_s: float | None, count: int | None, out: TextIO = sys.stdout) -> int:
    """Print events as they come; say so when a process stops heartbeating (hung or dead)."""
    endpoints = client.endpoints
    events = EventSubscriber(client.context, endpoints.run_dir, PROCESSES,
                             topics=sorted({*topics, "heartbeat."}),
                             connect=lambda sock, p: endpoints.connect(sock, p, "events"))
    started = time.monotonic()
    last_beat = dict.fromkeys(PROCESSES, started)
    silent: set[str] = set()
    printed = 0
    try:
        while (duration_s is None or time.monotonic() - started < duration_s) and \
                (count is None or printed < count):
            for topic, body in events.receive(100):
                if topic.startswith("heartbeat."):
                    process = topic.removeprefix("heartbeat.")
                    last_beat[process] = time.monotonic()
                    if process in silent:
                        silent.discard(process)
                        print(f"{_now()} {process} is heartbeating again", file=out, flush=True)
                if any(topic.startswith(t) for t in topics):
                    print(f"{_now()} {topic} {json.dumps(body, sort_keys=True)}", file=out,
                          flush=True)
                    printed += 1
            now = time.monotonic()
            for process, seen in last_beat.items():
                if now - seen > timeout_s and process not in silent:
                    silent.add(process)
                    print(f"{_now()} {process} has not heartbeated for {now - seen:.1f} s: "
                          "hung or down", file=out, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        events.close()
    return EXIT_DOWN if silent else EXIT_OK


def _now() -> str:
    return time.strftime("%H:%M:%S")
