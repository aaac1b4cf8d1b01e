"""``pipeline admin``: argument parsing and dispatch for the operator's commands.

Key generation for CurveZMQ (``keygen``) and signing (``sign``) work offline; every other
command talks to the running pipeline named by ``--env`` / ``--data-dir`` / ``--config``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Final

from pipeline.argtypes import finite_float, positive_float, positive_int
from pipeline.config import PROCESSES, PipelineConfig
from pipeline.errors import BadInputError

_MAX_TIMEOUT_S: Final = 3600.0
_MAX_EXPIRES_IN_S: Final = 7 * 86400.0  # a kill-switch message is for now, not for later
_MAX_ROWS: Final = 1_000_000


def _add_processes(parser: argparse.ArgumentParser) -> None:
    # No choices=: argparse rejects an empty nargs="*" list against them.
    parser.add_argument("processes", nargs="*", metavar="PROCESS",
                        help=f"one or more of {', '.join(PROCESSES)} (default: all)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-key", type=Path,
                        help="CURVE client secret key file (default control.client_secret_key)")
    parser.add_argument("--timeout", type=positive_float(_MAX_TIMEOUT_S),
                        help="seconds to wait per try (default control.request_timeout_s)")
    parser.add_argument("--cluster", action="store_true",
                        help="orders: all hosts, from the consolidated PostgreSQL")
    sub = parser.add_subparsers(dest="admin_command", required=True)
    status = sub.add_parser("status", help="one table of all four processes")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _add_processes(sub.add_parser("ping", help="is it answering?"))
    sub.add_parser("pause", help="the strategy stops emitting orders (ingest keeps reading)")
    resume = sub.add_parser("resume", help="the strategy emits orders again, for every "
                            "symbol (or one with --symbol) paused after venue refusals too")
    resume.add_argument("--symbol", help="id or name of the one symbol to resume (the "
                        "strategy's own pause stays)")
    _add_processes(sub.add_parser("reload", help="re-read the config (like SIGHUP)"))
    kill = sub.add_parser("kill", help="disable trading now")
    kill.add_argument("--reason", default="", help="recorded in the audit log")
    kill.add_argument("signature_files", nargs="*", type=Path,
                      help="signatures from `sign --disable` (not needed on ipc)")
    enable = sub.add_parser("trade-enable", help="enable trading with M-of-N signatures")
    enable.add_argument("signature_files", nargs="+", type=Path, help="files from `sign`")
    enable.add_argument("--reason", default="", help="recorded in the audit log")
    sign = sub.add_parser("sign", help="sign a kill-switch message with a Solana keypair file")
    sign.add_argument("--keypair", type=Path, required=True, help="Solana CLI keypair JSON")
    value = sign.add_mutually_exclusive_group(required=True)
    value.add_argument("--enable", action="store_true", help="sign TRADE_ENABLED = true")
    value.add_argument("--disable", action="store_true", help="sign TRADE_ENABLED = false")
    value.add_argument("--like", type=Path, help="co-sign the message of this signature file")
    # Negative is allowed: an already expired message shows how the ledger refuses one.
    sign.add_argument("--expires-in", type=finite_float(-_MAX_EXPIRES_IN_S, _MAX_EXPIRES_IN_S),
                      default=600.0, help="seconds until the message expires (default 600)")
    sign.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    reopen = sub.add_parser("balances-reopen", help="after an explained chain mismatch: the "
                            "ledger takes the chain's balances at its next reading (ipc only)")
    reopen.add_argument("--reason", required=True, help="recorded in the audit log")
    get = sub.add_parser("config-get", help="the ledger's runtime config (TRADE_ENABLED)")
    get.add_argument("key", nargs="?")
    watch = sub.add_parser("watch", help="live event stream; reports silent processes")
    watch.add_argument("--topic", action="append", help="topic prefix (default: all)")
    watch.add_argument("--duration", type=positive_float(), help="stop after this many seconds")
    watch.add_argument("--count", type=positive_int(_MAX_ROWS), help="stop after this many events")
    for table in ("orders", "fills"):
        rows = sub.add_parser(table, help=f"recent {table}, read-only from the database")
        rows.add_argument("--limit", type=positive_int(_MAX_ROWS), default=20)
    sub.choices["orders"].add_argument(
        "--postgres", help="with --cluster: postgresql://user:password@host:port/db "
        "(default: $PIPELINE_CLUSTER_POSTGRES_URL)")
    keygen = sub.add_parser("keygen", help="make a CurveZMQ key pair (<name>.key, .key_secret)")
    keygen.add_argument("--dir", type=Path, required=True)
    keygen.add_argument("--name", required=True, help="a file name, without a directory")


def run(args: argparse.Namespace, config: PipelineConfig) -> int:
    command = args.admin_command
    unknown = set(getattr(args, "processes", None) or ()) - set(PROCESSES)
    if unknown:
        raise BadInputError(f"unknown process {', '.join(sorted(unknown))}; "
                            f"one of {', '.join(PROCESSES)}")
    if args.cluster:
        if command != "orders":
            raise BadInputError(f"--cluster works with orders, not {command}")
        from pipeline.admin.cluster_orders import cluster_orders
        from pipeline.admin.readonly import format_table
        from pipeline.cluster.pgurl import postgres_url
        print(format_table(*cluster_orders(postgres_url(args.postgres), args.limit)))
        return 0
    if command == "keygen":
        from pipeline.endpoints import generate_keypair
        public, secret = generate_keypair(args.dir, _key_name(args.name))
        print(f"public key: {public}\nsecret key: {secret} (mode 0600; keep it private)")
        return 0
    if command == "sign":
        return _sign(args, config)
    if command in ("orders", "fills"):
        from pipeline.admin.readonly import format_table, recent_rows
        print(format_table(*recent_rows(config.paths.database, command, args.limit)))
        return 0
    from pipeline.admin import commands
    from pipeline.admin.client import AdminClient
    from pipeline.endpoints import Endpoints

    control = config.control
    client = AdminClient(Endpoints(control, config.paths.run_dir, client_key=args.client_key),
                         timeout_s=args.timeout or control.request_timeout_s,
                         retries=control.request_retries)
    try:
        if command == "status":
            return commands.status(client, as_json=args.json)
        if command == "ping":
            return commands.ping(client, args.processes or PROCESSES)
        if command == "resume" and args.symbol is not None:
            symbol = int(args.symbol) if args.symbol.isdigit() else args.symbol
            return commands.simple(client, ["strategy"], command, args={"symbol": symbol})
        if command in ("pause", "resume"):
            return commands.simple(client, ["strategy"], command)
        if command == "reload":
            return commands.simple(client, args.processes or PROCESSES, "reload")
        if command == "config-get":
            return commands.config_get(client, args.key)
        if command == "balances-reopen":
            return commands.balances_reopen(client, args.reason)
        if command == "watch":
            return commands.watch(client, topics=args.topic or [""],
                                  timeout_s=config.run.heartbeat_timeout_s,
                                  duration_s=args.duration, count=args.count)
        return _set_trading(args, client)
    finally:
        client.close()


def _set_trading(args: argparse.Namespace, client: object) -> int:
    from pipeline.admin import commands
    from pipeline.admin.client import AdminClient
    from pipeline.admin.signing import read_signature_files
    from pipeline.killswitch import KillSwitchMessage

    assert isinstance(client, AdminClient)
    value = args.admin_command == "trade-enable"
    message: KillSwitchMessage | None = None
    signatures: list[dict[str, str]] = []
    if args.signature_files:
        message, signatures = read_signature_files(args.signature_files)
    return commands.set_trading(client, value, message, signatures=signatures,
                                reason=args.reason)


def _sign(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipeline.admin.signing import (
        load_keypair,
        new_message,
        read_signature_files,
        signature_document,
    )

    keypair = load_keypair(args.keypair)
    if args.like is not None:
        message, _ = read_signature_files([args.like])
    else:
        message = new_message(config.env, bool(args.enable),
                              int(time.time() + args.expires_in))
    text = json.dumps(signature_document(keypair, message), sort_keys=True)
    if args.output is not None:
        try:
            args.output.write_text(text + "\n")
        except OSError as exc:  # a directory, a missing parent, no permission
            raise BadInputError(f"--output {args.output}: cannot write: "
                                f"{exc.strerror or exc}") from exc
    else:
        print(text)
    return 0


def _key_name(name: str) -> str:
    """``name`` if it is a plain file name: keys go into ``--dir`` and nowhere else."""
    if not name or name.strip(".") == "" or "/" in name or "\\" in name or "\0" in name:
        raise BadInputError(f"keygen --name {name!r}: must be a plain file name (no path "
                            f"separators, not . or ..)")
    return name
