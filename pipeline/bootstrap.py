"""Bootstrap checks: can this host run this config? Shown by ``pipeline check``, run at start.

Each check returns pass, fail or skip with a reason an operator can act on. They read and
probe, never change anything: the database is opened read-only, rings are inspected without
attaching, endpoints get a TCP connect: only the URLs the configured feed, venue and backups
really call, and at a start only in the process that calls them (:data:`OWNERS`: ingest
probes the feed's, the executor the venue's). At a process start a failure is logged and sets
``pipeline_bootstrap_failed`` (which pages); it stops the process (exit 2) only where that
process owns what failed (:data:`BLOCKING_AT_START`: the ledger its database's pages, ingest
its replay file, every process the shard of its market, which must be this host's).
Otherwise the process's own start-up refuses what is unsafe (a database of another
environment, a ring of another layout).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from pipeline import ring
from pipeline.clock import measure
from pipeline.cluster.shards import configured_market, configured_shard, market_name
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError, OperationalError
from pipeline.ledger.schema import SCHEMA_VERSION
from pipeline.metrics import BootstrapMetrics
from pipeline.topology import RingSpecs

PASS: Final = "pass"
FAIL: Final = "fail"
SKIP: Final = "skip"
WARN: Final = "warn"  # not available, but a fallback does the job
_KEY_FILE_WORDS: Final = ("keypair", "key_file", "key_path", "keyfile")
_URL_SCHEMES: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # pass | fail | skip | warn
    detail: str
    value: float | None = None  # a measured number, e.g. the clock offset in seconds

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def config_fields(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf ``(dotted.key, value)`` of a config tree (dataclasses, dicts, tuples)."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for item in dataclasses.fields(node):
            yield from config_fields(getattr(node, item.name), f"{prefix}{item.name}.")
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from config_fields(value, f"{prefix}{key}.")
    elif isinstance(node, tuple):
        for index, value in enumerate(node):
            yield from config_fields(value, f"{prefix}{index}.")
    else:
        yield prefix.rstrip("."), node


def check_config(config: PipelineConfig) -> CheckResult:
    # Loading already validated every key; report what was loaded so a wrong file shows.
    return CheckResult("config", PASS, f"{config.source}: env {config.env}, "
                                       f"venue {config.executor.venue}")


def check_shard(config: PipelineConfig) -> CheckResult:
    """The configured market must be in a shard this host runs (see :mod:`pipeline.cluster`):
    a host that started another host's market would trade it twice, with two books."""
    try:
        shard = configured_shard(config)
    except ConfigError as exc:
        return CheckResult("shard", FAIL, str(exc))
    market = market_name(config, configured_market(config))
    return CheckResult("shard", PASS, f"market {market}: shard {shard.id} on this host "
                                      f"{shard.host!r}")


def check_data_dir(config: PipelineConfig) -> CheckResult:
    paths = config.paths
    existing = paths.data_dir
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return CheckResult("data_dir", FAIL, f"{existing} is not writable by uid {os.geteuid()}")
    free_mb = shutil.disk_usage(existing).free / 1e6
    if free_mb < config.check.min_free_disk_mb:
        return CheckResult("data_dir", FAIL, f"{existing}: {free_mb:.0f} MB free, below "
                                             f"check.min_free_disk_mb = "
                                             f"{config.check.min_free_disk_mb:.0f}", free_mb)
    return CheckResult("data_dir", PASS, f"{paths.data_dir}: {free_mb:.0f} MB free", free_mb)


def check_database(config: PipelineConfig) -> CheckResult:
    database = config.paths.database
    if not database.exists():
        return CheckResult("database", PASS, f"{database} not created yet (the ledger makes it)")
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2.0)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return CheckResult("database", FAIL, f"{database}: {exc}")
    env = meta.get("environment")
    if env != config.env:
        return CheckResult("database", FAIL, f"{database} belongs to environment {env!r}, "
                                             f"config says {config.env!r}")
    if journal.lower() != "wal":
        return CheckResult("database", FAIL, f"{database}: journal_mode {journal}, not wal")
    if meta.get("schema_version") != SCHEMA_VERSION:
        return CheckResult("database", FAIL, f"{database}: schema {meta.get('schema_version')}, "
                                             f"this code needs {SCHEMA_VERSION} (the ledger "
                                             f"migrates it at start; a newer one needs newer code)")
    return CheckResult("database", PASS, f"{database}: env {env}, schema "
                                         f"{meta.get('schema_version')}, wal")


def check_database_pages(config: PipelineConfig) -> CheckResult:
    """``PRAGMA quick_check`` on a read-only connection: a page written over by something
    else (a disk fault, a stray ``dd``) must stop the ledger before it books on top of it.
    It reads every page once: a second or so per GB, at start only."""
    database = config.paths.database
    if not database.exists():
        return CheckResult("database_pages", SKIP, f"{database} not created yet")
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2.0)
        try:
            problems = [" ".join(str(row[0]).split())  # one line, for logs and the table
                        for row in conn.execute("PRAGMA quick_check(5)")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return CheckResult("database_pages", FAIL, f"{database}: {exc}")
    if problems != ["ok"]:
        return CheckResult("database_pages", FAIL, f"{database} is corrupted (restore it from "
                                                   f"a backup): {'; '.join(problems)}")
    return CheckResult("database_pages", PASS, f"{database}: quick_check ok")


def check_replay(config: PipelineConfig) -> CheckResult:
    """The replay file must be there and readable; its rows are checked when ingest loads it."""
    ingest = config.ingest
    if ingest.feed != "replay":
        return CheckResult("replay", SKIP, f"ingest.feed is {ingest.feed}")
    if not ingest.replay_path:
        return CheckResult("replay", PASS, "the bundled candles")
    path = Path(ingest.replay_path)
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return CheckResult("replay", FAIL, f"ingest.replay_path {path}: "
                                           f"{exc.strerror or exc}")
    return CheckResult("replay", PASS, f"{path} ({ingest.replay_format}, "
                                       f"{path.stat().st_size} bytes)")


def check_rings(config: PipelineConfig) -> CheckResult:
    shm_dir = Path(config.rings.shm_dir)
    if not shm_dir.is_dir() or not os.access(shm_dir, os.W_OK | os.X_OK):
        return CheckResult("rings", FAIL, f"{shm_dir} is not a writable directory")
    specs = RingSpecs.from_config(config).all()
    problems: list[str] = []
    present = 0
    needed = 0
    for spec in specs:
        path = shm_dir / spec.name
        if not path.exists():
            needed += spec.capacity * spec.dtype.itemsize
            continue
        info = ring.inspect_segment(path)
        if info is None:
            continue  # being initialised by a starting process right now
        present += 1
        if info.env != config.env:
            problems.append(f"{spec.name} belongs to env {info.env!r}")
        elif info.lossless != spec.lossless:
            problems.append(f"{spec.name} kind differs from config")
        elif stat.S_IMODE(path.stat().st_mode) & 0o077:
            problems.append(f"{spec.name} is readable by others")
    free = shutil.disk_usage(shm_dir).free
    if free < needed:
        problems.append(f"{shm_dir} has {free / 1e6:.1f} MB free, rings need "
                        f"{needed / 1e6:.1f} MB")
    if problems:
        return CheckResult("rings", FAIL, "; ".join(problems))
    return CheckResult("rings", PASS, f"{present}/{len(specs)} present in {shm_dir}, "
                                      f"{free / 1e6:.0f} MB free")


def check_key_files(config: PipelineConfig) -> CheckResult:
    found = [(key, str(value)) for key, value in config_fields(config)
             if isinstance(value, str) and value and any(w in key for w in _KEY_FILE_WORDS)]
    if not found:
        return CheckResult("key_files", SKIP, "no key file configured")
    problems = []
    for key, text in found:
        path = Path(text)
        try:
            info = path.stat()
        except OSError as exc:
            problems.append(f"{key}: {exc.strerror}")
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{key}: not a regular file")
        elif stat.S_IMODE(info.st_mode) & 0o077:
            problems.append(f"{key}: mode {stat.S_IMODE(info.st_mode):04o}, must be 0600 or "
                            "stricter (chmod 600)")
        elif info.st_uid != os.geteuid():
            problems.append(f"{key}: owned by uid {info.st_uid}, not this user")
    if problems:
        return CheckResult("key_files", FAIL, "; ".join(problems))
    return CheckResult("key_files", PASS, ", ".join(key for key, _ in found) + ": 0600, ours")


def check_clock(config: PipelineConfig) -> CheckResult:
    """The host clock against ``[clock]`` servers with the trading gate's one threshold,
    ``clock.max_drift_s``: a failure is a FAIL where the gate halts trading (devnet and
    mainnet by default), a WARN where it only warns."""
    clock = config.clock
    if not clock.servers:
        return CheckResult("clock", SKIP, "clock.servers is empty")
    offset_s, source = measure(clock)
    verdict = FAIL if clock.action(config.env) != "warn" else WARN
    if offset_s is None:
        return CheckResult("clock", verdict, source)
    detail = f"offset {offset_s * 1000:+.1f} ms vs {source}"
    if abs(offset_s) >= clock.max_drift_s:
        return CheckResult("clock", verdict, f"{detail}: beyond clock.max_drift_s = "
                                             f"{clock.max_drift_s:g} s", offset_s)
    return CheckResult("clock", PASS, detail, offset_s)


def feed_urls(config: PipelineConfig) -> list[tuple[str, str]]:
    """(config key, URL) of each endpoint the configured feed and its cross-check call.

    Mirrors :func:`pipeline.ingest.live.make_live_feed`: the other ``ingest.live`` URLs carry
    defaults but are never called, so they are never probed.
    """
    live = config.ingest.live
    used: list[tuple[str, str]] = []
    for feed in dict.fromkeys((config.ingest.feed, live.cross_check)):
        if feed == "coingecko":
            key = "coingecko_pro_url" if live.coingecko_key_kind == "pro" else "coingecko_url"
            used.append((f"ingest.live.{key}", getattr(live, key)))
        elif feed in ("hermes", "jupiter"):
            used.append((f"ingest.live.{feed}_url", getattr(live, f"{feed}_url")))
        elif feed == "pyth":  # never a cross-check: the config refuses that
            used += [(f"ingest.live.rpc_urls.{i}", url) for i, url in enumerate(live.rpc_urls)]
            used += [(f"ingest.live.ws_urls.{i}", url) for i, url in enumerate(live.ws_urls)]
    return used


def venue_urls(config: PipelineConfig) -> list[tuple[str, str]]:
    """(config key, URL) of the venue's RPC and swap API; none on paper, and none set on
    localnet (its manifest names them, and the solana checks probe them)."""
    if config.executor.venue != "solana":
        return []
    solana = config.executor.solana
    return [(f"executor.solana.{key}", getattr(solana, key))
            for key in ("rpc_url", "swap_url") if getattr(solana, key)]


def backup_urls(config: PipelineConfig) -> list[tuple[str, str]]:
    """The S3 endpoint the ledger's backups go to, when backups are on and it is set."""
    backup = config.ledger.backup
    return [("ledger.backup.endpoint_url", backup.endpoint_url)] \
        if backup.enabled and backup.endpoint_url else []


def check_feed_endpoints(config: PipelineConfig) -> CheckResult:
    """The URLs the configured feed calls must accept a TCP connection (ingest's check)."""
    return _probe("feed_endpoints", feed_urls(config), config.check.reach_timeout_s,
                  f"ingest.feed {config.ingest.feed} calls no URL")


def check_venue_endpoints(config: PipelineConfig) -> CheckResult:
    """The venue's RPC and swap API must accept a TCP connection (the executor's check)."""
    return _probe("venue_endpoints", venue_urls(config), config.check.reach_timeout_s,
                  f"executor.venue {config.executor.venue} has no URL in the config")


def check_backup_endpoint(config: PipelineConfig) -> CheckResult:
    """The backup endpoint must accept a TCP connection (the ledger's check)."""
    return _probe("backup_endpoint", backup_urls(config), config.check.reach_timeout_s,
                  "backups off, or on AWS's default endpoint")


def _probe(name: str, urls: list[tuple[str, str]], timeout_s: float,
           unused: str) -> CheckResult:
    """A TCP connect to each URL: one result naming every one that refused."""
    if not urls:
        return CheckResult(name, SKIP, unused)
    problems, reached = [], []
    for key, url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or _URL_SCHEMES.get(parts.scheme, 443)
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError as exc:
            problems.append(f"{key} ({host}:{port}): {exc.strerror or exc}")
            continue
        reached.append(f"{key} {(time.monotonic() - started) * 1000:.0f} ms")
    if problems:
        return CheckResult(name, FAIL, "; ".join(problems))
    return CheckResult(name, PASS, ", ".join(reached))


def check_solana(config: PipelineConfig) -> list[CheckResult]:
    """One row per RPC and swap API capability the Solana venue relies on (see
    :mod:`pipeline.executor.solana.probe`); a required one missing fails."""
    if config.executor.venue != "solana":
        return [CheckResult("solana", SKIP, f"executor.venue is {config.executor.venue}")]
    from pipeline.executor.solana.probe import SwapProbe, missing, probe
    from pipeline.solana.account import trading_account

    solana = config.executor.solana
    try:
        account = trading_account(config, wait_s=0.0)
    except OperationalError as exc:
        return [CheckResult("solana", FAIL, str(exc))]
    market = next(iter(account.markets.values()), None)
    swap = SwapProbe(solana.api, os.environ.get(solana.api_key_env, ""))
    if market is not None:  # a quote of one unit of the quote asset
        swap = dataclasses.replace(swap, input_mint=market.quote_mint,
                                   output_mint=market.base_mint,
                                   amount=10**market.quote_decimals)
    capabilities = probe(account.rpc_url, account.swap_url, account.owner, swap,
                         solana.rpc_timeout_s)
    failing = {c.name for c in missing(capabilities)}
    results = []
    for c in capabilities:
        if c.available:
            status, detail = PASS, c.detail
        elif c.name in failing:
            instead = f", and {c.fallback} cannot stand in" if c.fallback else ""
            status, detail = FAIL, f"missing, required{instead}: {c.detail}"
        elif c.fallback:
            status, detail = WARN, f"missing, {c.fallback} stands in: {c.detail}"
        else:
            status, detail = WARN, f"missing, not needed with this RPC: {c.detail}"
        results.append(CheckResult(f"solana.{c.name}", status, detail))
    return results


Check = Callable[[PipelineConfig], CheckResult | list[CheckResult]]
CHECKS: Final[tuple[Check, ...]] = (
    check_config, check_shard, check_data_dir, check_database, check_database_pages, check_replay,
    check_rings, check_key_files, check_clock, check_feed_endpoints, check_venue_endpoints,
    check_backup_endpoint, check_solana,
)
# At a process start, the checks whose failure stops that process (exit 2): it owns what
# they look at, and would otherwise crash on it or, worse, write on top of it. Every
# process runs for the configured market's shard: none starts on a host that does not own it.
BLOCKING_AT_START: Final[dict[str, tuple[str, ...]]] = {
    "ledger": ("shard", "database_pages"),
    "ingest": ("shard", "replay"),
    "strategy": ("shard",),
    "executor": ("shard",),
}
# Checks that read a lot or call out: at a start, only the process that owns what they look
# at runs them, so one bad URL is one failed check in one process (``pipeline check`` runs
# them all).
OWNERS: Final[dict[str, str]] = {
    "database_pages": "ledger",
    "backup_endpoint": "ledger",
    "feed_endpoints": "ingest",
    "venue_endpoints": "executor",
    "solana": "executor",
}


# Only `pipeline check` runs these: at a start the ledger's clock gate (pipeline.clock)
# measures the clock itself, halts trading and exports the figure; a second query would be
# a second alert for one problem.
CHECK_COMMAND_ONLY: Final = frozenset({"clock"})


def owned_by_others(process: str) -> frozenset[str]:
    """The checks ``process`` leaves to their owner (or to ``pipeline check``) at its start."""
    return frozenset(name for name, owner in OWNERS.items() if owner != process) \
        | CHECK_COMMAND_ONLY


def run_checks(config: PipelineConfig, only: frozenset[str] | None = None,
               skip: frozenset[str] = frozenset()) -> list[CheckResult]:
    """Run every check (or those named in ``only``, minus ``skip``); a check that raises is
    reported as failed, never propagated."""
    results = []
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        if (only is not None and name not in only) or name in skip:
            continue
        try:
            found = check(config)
            results.extend(found if isinstance(found, list) else [found])
        except Exception as exc:  # a broken check must not hide the others
            results.append(CheckResult(name, FAIL, f"check raised {type(exc).__name__}: {exc}"))
    return results


def format_table(results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.name:<{width}}  {r.status:<6}  {r.detail}" for r in results]
    return "\n".join(lines)


def refuse_at_start(process: str, config: PipelineConfig, registry: CollectorRegistry,
                    log: logging.Logger) -> None:
    """The checks at a process start (all of them if ``check.on_start``, else only the
    blocking ones); raise OperationalError if one that blocks ``process`` failed."""
    blocking = frozenset(BLOCKING_AT_START.get(process, ()))
    if config.check.on_start:
        results = report_at_start(config, registry, log,
                                  skip=owned_by_others(process) - blocking)
    else:
        results = run_checks(config, only=blocking)
    failed = [r for r in results if r.failed and r.name in blocking]
    if failed:
        raise OperationalError("; ".join(f"check {r.name} failed: {r.detail}" for r in failed))


def report_at_start(config: PipelineConfig, registry: CollectorRegistry,
                    log: logging.Logger, skip: frozenset[str] = frozenset()
                    ) -> list[CheckResult]:
    """Run the checks at a process start: log each failure, export the results as metrics."""
    metrics = BootstrapMetrics(registry)
    results = run_checks(config, skip=skip)
    for result in results:
        metrics.check_failed.labels(result.name).set(1.0 if result.failed else 0.0)
        if result.failed:
            log.error("bootstrap check %s failed: %s", result.name, result.detail,
                      extra={"event": "bootstrap.failed", "check": result.name})
    failed = [r.name for r in results if r.failed]
    metrics.failed.set(1.0 if failed else 0.0)
    log.info("bootstrap checks done", extra={
        "event": "bootstrap.done", "failed": failed,
        "skipped": [r.name for r in results if r.status == SKIP]})
    return results
