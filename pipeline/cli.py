"""The ``pipeline`` command: ``run`` the whole pipeline, one process for supervisor, or a tool.

Tools live in their own modules, listed in ``TOOLS``; each module provides
``add_arguments(parser)`` and ``run(args, config) -> int`` and is imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from pipeline import dirlock
from pipeline.argtypes import positive_float
from pipeline.config import PROCESSES, PipelineConfig, load_config
from pipeline.errors import EXIT_OK, EXIT_OPERATIONAL, ConfigError, OperationalError
from pipeline.lineage import LAUNCHER_GONE, follow_launcher
from pipeline.logs import log_start_failure, setup_logging
from pipeline.runtime import Runtime
from pipeline.service import Service, run_service
from pipeline.startup import operator_problem

# name -> (module, one-line help). A tool module provides add_arguments(parser) and
# run(args, config) -> exit code, and keeps heavy imports inside run() so that the CLI
# starts fast.
TOOLS: Final[dict[str, tuple[str, str]]] = {
    "backup": ("pipeline.ledger.backup.tool_backup", "encrypted S3 backups: --now, list"),
    "restore": ("pipeline.ledger.backup.tool_restore",
                "rebuild the ledger from S3 backups: --to PATH [--at TIME] [--force]"),
    "admin": ("pipeline.admin.cli", "steer a running pipeline: status, pause, kill switch, ..."),
    "check": ("pipeline.check", "bootstrap checks (config, database, rings, keys, clock)"),
    "bench": ("pipeline.bench.cli", "benchmarks: rings vs alternatives, latency, throughput"),
    "backtest": ("pipeline.backtest.tool", "strategy and risk code over candle or trade files"),
    "localnet": ("pipeline.localnet.tool", "offline Solana venue: LiteSVM RPC + market maker"),
    "consolidate": ("pipeline.cluster.tool",
                    "ship this host's ledger into the consolidated PostgreSQL, exactly once"),
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (default: built-in)")
    parser.add_argument("--data-dir", help="data directory (default ./var/<env>)")
    parser.add_argument("--env", choices=("paper", "localnet", "devnet", "mainnet"),
                        help="environment (default paper)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline",
                                     description="Low-latency Solana trading pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start all four processes and supervise them")
    _add_common(run)
    run.add_argument("--duration", type=positive_float(), help="stop after this many seconds")
    for name in PROCESSES:
        _add_common(sub.add_parser(name, help=f"run the {name} process alone (for supervisor)"))
    for name, (module, help_text) in TOOLS.items():
        tool = sub.add_parser(name, help=help_text)
        _add_common(tool)
        importlib.import_module(module).add_arguments(tool)
        tool.set_defaults(tool_module=module)
    return parser


def _load(args: argparse.Namespace) -> PipelineConfig:
    overrides: dict[str, object] = {}
    if args.env:
        overrides["env"] = args.env
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    return load_config(args.config, overrides=overrides)


def _service_factory(name: str) -> Callable[[Runtime], Service]:
    # Imported lazily: each process loads only its own package.
    if name == "ingest":
        from pipeline.ingest.process import IngestService
        return IngestService
    if name == "strategy":
        from pipeline.strategy.process import StrategyService
        return StrategyService
    if name == "executor":
        from pipeline.executor.process import ExecutorService
        return ExecutorService
    from pipeline.ledger.process import LedgerService
    return LedgerService


def _exit_before_start(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(EXIT_OK)  # asked to stop before anything started: nothing to drain


def main(argv: Sequence[str] | None = None) -> int:
    # Orders, fills, the audit log and backups are nobody else's business: everything this
    # command creates (data dir, database and its -wal/-shm, logs) is for its owner only.
    os.umask(0o077)
    # Until a process installs its own handlers (pipeline.service, the launcher), a stop
    # request means a clean exit rather than death by signal.
    signal.signal(signal.SIGTERM, _exit_before_start)
    signal.signal(LAUNCHER_GONE, _exit_before_start)
    if not follow_launcher():
        print("pipeline: the `pipeline run` that started this process is gone; not starting",
              file=sys.stderr)
        return EXIT_OK
    args = _parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        if args.command in (*PROCESSES, "run") and args.data_dir:  # supervisor passes it
            # Where the operator (and promtail) look first: the process's own JSON log.
            log_start_failure(args.command, args.env or "unknown",
                              Path(args.data_dir) / "logs", str(exc))
        return EXIT_OPERATIONAL
    module = getattr(args, "tool_module", None)
    if module is not None:
        tool = importlib.import_module(module)
        try:
            code: int = tool.run(args, config)
        except Exception as exc:
            problem = operator_problem(exc)  # bad input, a path in the way, a broken file
            if problem is None:
                raise
            print(f"pipeline {args.command}: {problem}", file=sys.stderr)
            return EXIT_OPERATIONAL
        return code
    if args.command == "run":
        from pipeline.launcher import Launcher

        try:  # before anything is created or unlinked: another run may own this data dir
            locks = dirlock.acquire_run(config.paths.run_dir, PROCESSES)
        except OperationalError as exc:
            print(f"pipeline run: {exc}", file=sys.stderr)
            return EXIT_OPERATIONAL
        setup_logging("run", config.env, config.paths.log_dir, level=config.log.level,
                      keep_days=config.log.keep_days, to_stderr=True)
        logging.getLogger().handlers[-1].setLevel(logging.WARNING)  # the status line speaks
        launcher = Launcher(config, args.config, args.duration, locks,
                            interactive=sys.stdout.isatty())
        return launcher.run()
    try:
        runtime = Runtime.build(config, args.command,
                                to_stderr=config.log.stderr
                                and os.environ.get("PIPELINE_CHILD") != "1",
                                loader=lambda: _load(args))
    except Exception as exc:
        # The data dir held by another process, a planted file, a data dir that is a file or
        # read-only, a socket path too long for ipc: the operator's to fix, not a crash.
        problem = operator_problem(exc)
        if problem is None:
            raise
        log = logging.getLogger(f"pipeline.{args.command}")
        if log.hasHandlers():  # else logging's last resort would print the line twice
            log.error("cannot start: %s", problem, extra={"event": "process.start_failed"})
        print(f"pipeline {args.command}: cannot start: {problem}", file=sys.stderr)
        return EXIT_OPERATIONAL
    return run_service(runtime, _service_factory(args.command))
