"""``pipeline check``: the bootstrap checks as a table; exit 0 only if none failed."""

from __future__ import annotations

import argparse
import json

from pipeline.config import PipelineConfig
from pipeline.errors import EXIT_OK, EXIT_OPERATIONAL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines instead")


def run(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipeline.bootstrap import format_table, run_checks

    results = run_checks(config)
    if args.json:
        for result in results:
            print(json.dumps({"check": result.name, "status": result.status,
                              "detail": result.detail, "value": result.value}))
    else:
        print(format_table(results))
    return EXIT_OPERATIONAL if any(r.failed for r in results) else EXIT_OK
