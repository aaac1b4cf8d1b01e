"""``pipeline restore --to PATH [--at TIME] [--force]``: rebuild the ledger from S3."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", type=Path, required=True, help="database file to write")
    parser.add_argument("--at", help="point in time, ISO 8601 (UTC unless an offset is "
                                     "given); default: the latest backup")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("--key-file", help="keyring file (default: ledger.backup.key_file "
                                           "or $PIPELINE_BACKUP_KEYS)")


def run(args: argparse.Namespace, config: Any) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from pipeline.errors import EXIT_OPERATIONAL
    from pipeline.ledger.backup.objects import parse_time
    from pipeline.ledger.backup.restore import restore
    from pipeline.ledger.backup.service import make_store

    try:
        at = parse_time(args.at) if args.at else None
    except ValueError:
        print(f"pipeline restore: --at {args.at!r} is not an ISO 8601 time", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        result = restore(make_store(config, key_file=args.key_file), args.to, at=at,
                         force=args.force)
    except (BotoCoreError, ClientError) as exc:
        print(f"pipeline restore: cannot read the backups from S3 "
              f"({config.ledger.backup.endpoint_url or 'AWS'}): {exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
    print(f"restored {result.path} from snapshot {result.chain} + {result.increments} "
          f"increments, as of {result.point_in_time}")
    for table, count in sorted(result.row_counts.items()):
        print(f"  {table:16} {count:10d} rows")
    print("  checks: checksums, GCM tags, watermarks, row counts, integrity_check: ok")
    return 0
