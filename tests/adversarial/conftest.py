"""Runs the whole adversarial table once per session and prints its counts at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from adversarial_cases import ALL_CASES, stop_live
from adversary import Outcome, World, can_drop_privileges, run_case, summary
from testkit import scratch_shm_dir

from pipeline.config import load_config
from pipeline.ledger.db import init_db, make_engine

OUTCOMES = pytest.StashKey[list[Outcome]]()
# Processes that start and fail: a few side by side keep the suite short on two cores.
_WORKERS = 4


def _template_db(directory: Path) -> Path:
    """A real paper ledger database, initialised by the ledger's own code."""
    path = directory / "template.sqlite"
    engine = make_engine(path)
    try:
        init_db(engine, "paper", load_config(environ={}).ledger)
    finally:
        engine.dispose()
    return path


@pytest.fixture(scope="session")
def adversarial_outcomes(request: pytest.FixtureRequest,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    root = tmp_path_factory.mktemp("adv")
    with scratch_shm_dir("pladv") as shm_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE")}
        env["PIPELINE__RINGS__SHM_DIR"] = f'"{shm_dir}"'
        env["PIPELINE__METRICS__PORTS"] = "{ ingest = 0, strategy = 0, executor = 0, ledger = 0 }"
        world = World(root=root, shm_dir=shm_dir, env=env, template_db=_template_db(root))
        cases = [c for c in ALL_CASES if not c.unprivileged or can_drop_privileges()]
        try:
            with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
                alone = list(pool.map(lambda c: run_case(c, world),
                                      [c for c in cases if not c.shared]))
            shared = [run_case(c, world) for c in cases if c.shared]
        finally:
            stopped = stop_live(world)
        outcomes = alone + shared
        request.config.stash[OUTCOMES] = outcomes
        by_name = {o.case: o for o in outcomes}
        by_name["_live_ledger_stop"] = _stop_outcome(stopped)
        yield by_name


def _stop_outcome(stopped: tuple[int, str] | None) -> Outcome:
    if stopped is None:
        return Outcome("live_ledger_stop", "clean", None, 0, "not started")
    code, err = stopped
    kind = "traceback" if "Traceback" in err else "clean" if code == 0 else "crash"
    return Outcome("live_ledger_stop", kind, None, code, err[-2000:])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    outcomes = terminalreporter.config.stash.get(OUTCOMES, None)
    if outcomes:
        terminalreporter.write_sep("=", "adversarial suite")
        terminalreporter.write_line(summary(outcomes))
