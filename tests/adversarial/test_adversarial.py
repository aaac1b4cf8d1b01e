"""Issue 13: hostile and careless inputs end in one clean line and the right exit code,
never a traceback or a crash, and lose nothing (see ``adversarial_cases.CASES``)."""

from __future__ import annotations

import pytest
from adversarial_cases import ALL_CASES
from adversary import TRACEBACK, Case, Outcome, can_drop_privileges, classify


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_case(case: object, adversarial_outcomes: dict[str, Outcome]) -> None:
    name = getattr(case, "name", "")
    if getattr(case, "unprivileged", False) and not can_drop_privileges():
        pytest.skip("running as root without setpriv: permissions cannot be taken away")
    outcome = adversarial_outcomes[name]
    assert outcome.ok, outcome.explain()


def test_the_live_ledger_drains_to_exit_0_after_the_refusals(
        adversarial_outcomes: dict[str, Outcome]) -> None:
    outcome = adversarial_outcomes["_live_ledger_stop"]
    assert outcome.ok, outcome.explain()


def test_the_runner_tells_the_classes_apart() -> None:
    """The suite can fail: a traceback, a crash and a wrong code are each seen as such."""
    case = Case("x", lambda _w: (), says="bad value")
    assert classify(case, 2, "pipeline: config x = 1: bad value\n") == "clean"
    assert classify(case, 1, f"{TRACEBACK}:\n  ...\nValueError: bad value\n") == "traceback"
    assert classify(case, 3, "pipeline: bad value\n") == "crash"
    assert classify(case, -9, "") == "crash"
    assert classify(case, 0, "bad value\n") == "wrong"
    assert classify(case, 2, "something else\n") == "wrong"
