"""``pipeline check``: the bootstrap checks as a table; exit 0 only if none failed.

Every check by default, each endpoint check probing only the URLs in use; ``--process``
shows what that process checks at its start (the endpoints it calls, not the others').
"""

from __future__ import annotations

import argparse
import json

from pipeline.config import PROCESSES, PipelineConfig
from pipeline.errors import EXIT_OK, EXIT_OPERATIONAL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines instead")
    parser.add_argument("--process", choices=PROCESSES,
                        help="only the checks this process runs at its start (default: all)")


def run(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipeline.bootstrap import format_table, owned_by_others, run_checks

    skip = owned_by_others(args.process) if args.process else frozenset()
    results = run_checks(config, skip=skip)
    if args.json:
        for result in results:
            print(json.dumps({"check": result.name, "status": result.status,
                              "detail": result.detail, "value": result.value}))
    else:
        print(format_table(results))
    return EXIT_OPERATIONAL if any(r.failed for r in results) else EXIT_OK
