"""``pipeline consolidate``: ship one host's ledger into the consolidated PostgreSQL.

``--once`` makes one pass and exits (cron, tests); ``--interval-s S`` passes every S
seconds until SIGTERM/SIGINT, which end the loop between passes. A PostgreSQL that goes
away while running is waited for with capped exponential back-off (nothing is lost: the
cursor of the last batch committed with it); anything unexpected stops the process with
EXIT_CRASH and a log line, for its supervisor to restart it. A bad host name, a missing
ledger file or a PostgreSQL unreachable at start exit EXIT_OPERATIONAL: restarting would
not help. The URL's password never reaches a log line or the terminal.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from pipeline.argtypes import positive_float, positive_int
from pipeline.errors import EXIT_CRASH, EXIT_OK, EXIT_OPERATIONAL, OperationalError

if TYPE_CHECKING:  # heavy imports stay inside run(): the CLI starts fast
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

    from pipeline.cluster.consolidator import Consolidator
    from pipeline.metrics import ConsolidatorMetrics

_MAX_BACKOFF_S: Final = 10.0
_MAX_INTERVAL_S: Final = 86400.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True,
                        help="this host's name in the cluster (its PostgreSQL schema)")
    parser.add_argument("--database", type=Path, required=True,
                        help="the host's ledger SQLite file (read-only)")
    parser.add_argument("--postgres", help="postgresql://user:password@host:port/db "
                        "(default: $PIPELINE_CLUSTER_POSTGRES_URL, which keeps it out of ps)")
    parser.add_argument("--batch-rows", type=positive_int(1_000_000), default=5000,
                        help="rows per PostgreSQL transaction (default 5000)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve /metrics on 127.0.0.1 at this port (0: any free one, "
                        "written to --metrics-port-file); default: no endpoint")
    parser.add_argument("--metrics-port-file", type=Path, default=None,
                        help="write the bound metrics port here")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--once", action="store_true", help="one pass, then exit")
    when.add_argument("--interval-s", type=positive_float(_MAX_INTERVAL_S),
                      help="a pass every this many seconds until stopped")


def run(args: argparse.Namespace, config: Any) -> int:
    from sqlalchemy import create_engine

    from pipeline.cluster.pgurl import postgres_url
    from pipeline.logs import setup_logging

    log = setup_logging("consolidate", config.env, None, level=config.log.level)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    try:
        url = postgres_url(args.postgres)
    except OperationalError as exc:
        return _refuse(log, str(exc), EXIT_OPERATIONAL)
    engine = create_engine(url, pool_pre_ping=True)
    try:
        return _consolidate(args, url, engine, stop, log)
    finally:
        engine.dispose()


def _consolidate(args: argparse.Namespace, url: URL, engine: Engine, stop: threading.Event,
                 log: logging.Logger) -> int:
    """Start-up checks, then the passes; the exit code."""
    from sqlalchemy.exc import DBAPIError

    from pipeline.cluster.consolidator import Consolidator
    from pipeline.cluster.pgurl import redacted, scrub

    try:
        consolidator = Consolidator(args.host, args.database, engine,
                                    batch_rows=args.batch_rows)
    except OperationalError as exc:
        return _refuse(log, str(exc), EXIT_OPERATIONAL)
    try:
        new = consolidator.start()
        log.info("consolidating host %s from %s into %s", args.host, args.database,
                 redacted(url), extra={"event": "consolidate.started", "host": args.host,
                                       "new_host": new})
    except OperationalError as exc:
        consolidator.close()
        return _refuse(log, scrub(str(exc), url), EXIT_OPERATIONAL)
    except DBAPIError as exc:  # at start: the operator's URL, file or server to fix
        consolidator.close()
        where = f"PostgreSQL at {redacted(url)}" if _lost_postgres(exc) else str(args.database)
        return _refuse(log, f"cannot read or reach {where}: {scrub(str(exc.orig), url)}",
                       EXIT_OPERATIONAL)
    metrics = _serve_metrics(args)
    try:
        return _passes(consolidator, args, url, stop, log, metrics=metrics)
    except (OperationalError, DBAPIError) as exc:
        # Fail fast: a refused row or a replaced file must not be shipped around.
        problem = scrub(str(getattr(exc, "orig", None) or exc), url)
        return _refuse(log, f"host {args.host}: {problem}", EXIT_CRASH)
    finally:
        consolidator.close()


def _serve_metrics(args: argparse.Namespace) -> ConsolidatorMetrics:
    """The metrics of this run, served on 127.0.0.1 if ``--metrics-port`` is given (for
    Prometheus on the same host, as the pipeline's own processes)."""
    from prometheus_client import CollectorRegistry

    from pipeline.metrics import ConsolidatorMetrics, serve

    registry = CollectorRegistry()
    metrics = ConsolidatorMetrics(registry, args.host)
    if args.metrics_port is not None:
        serve(registry, "127.0.0.1", args.metrics_port, args.metrics_port_file)
    return metrics


def _passes(consolidator: Consolidator, args: argparse.Namespace, url: URL,
            stop: threading.Event, log: logging.Logger, *, metrics: ConsolidatorMetrics) -> int:
    """Pass after pass until stopped (or once); waits out a PostgreSQL that went away."""
    from sqlalchemy.exc import DBAPIError

    from pipeline.cluster.pgurl import redacted, scrub

    backoff_s = 0.5
    while True:
        started_s = time.perf_counter()
        try:
            counts = consolidator.ship_once()
        except DBAPIError as exc:
            if args.once or not _lost_postgres(exc):
                raise
            metrics.lost_postgres()
            log.warning("PostgreSQL at %s unreachable, retrying in %.1f s: %s", redacted(url),
                        backoff_s, scrub(str(exc.orig), url),
                        extra={"event": "consolidate.postgres_lost"})
            if stop.wait(backoff_s):
                return EXIT_OK
            backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
            continue
        backoff_s = 0.5
        metrics.shipped(counts)
        rows = sum(counts.values())
        if rows:
            seconds = time.perf_counter() - started_s
            log.info("shipped %d rows in %.3f s", rows, seconds, extra={
                "event": "consolidate.shipped", "host": args.host, "rows": rows,
                "tables": {t: n for t, n in counts.items() if n},
                "rows_per_s": round(rows / max(seconds, 1e-9))})
        if args.once or stop.wait(args.interval_s):
            return EXIT_OK


def _lost_postgres(exc: BaseException) -> bool:
    """Is ``exc`` PostgreSQL's connection failing (down, restarting), not a refused row?"""
    from psycopg import OperationalError as PgConnectionError
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError) and isinstance(exc.orig, PgConnectionError)


def _refuse(log: logging.Logger, problem: str, code: int) -> int:
    log.error("cannot consolidate: %s", problem, extra={"event": "consolidate.failed"})
    print(f"pipeline consolidate: {problem}", file=sys.stderr)
    return code
