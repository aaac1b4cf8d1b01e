"""``pipeline backup --now`` (a snapshot now) and ``pipeline backup list``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("list",), help="list the backups")
    parser.add_argument("--now", action="store_true",
                        help="take and upload a full snapshot now (starts a new chain)")


def run(args: argparse.Namespace, config: Any) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from prometheus_client import CollectorRegistry

    from pipeline.errors import EXIT_OPERATIONAL, OperationalError
    from pipeline.ledger.backup.agent import BackupAgent
    from pipeline.ledger.backup.service import make_store

    if not args.now and args.action != "list":
        print("pipeline backup: give --now or list", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        store = make_store(config)
        if args.now:
            database = config.paths.database
            if not database.exists():
                raise OperationalError(f"{database} does not exist: nothing to back up")
            log = logging.getLogger("pipeline.backup")
            agent = BackupAgent(config.ledger.backup, database, config.env,
                                store=store, registry=CollectorRegistry(), log=log,
                                work_dir=database.parent)
            agent.snapshot_now()
            print(f"snapshot {agent.status()['chain']} uploaded to s3://{store.bucket}/"
                  f"{store.root}")
            return 0
        for ref in store.list():
            print(f"{ref.kind:9} {ref.chain} {ref.seq:8d} {ref.size_bytes:12d}  {ref.key}")
        return 0
    except (BotoCoreError, ClientError) as exc:
        print(f"pipeline backup: cannot reach S3 "
              f"({config.ledger.backup.endpoint_url or 'AWS'}): {exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
