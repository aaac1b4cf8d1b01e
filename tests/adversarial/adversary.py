"""The adversarial suite's runner: each case is a real ``python -m pipeline`` process given
something hostile or careless, and its outcome is put in one class.

Classes, worst first:

- ``traceback``: a Python traceback reached stdout or stderr (the operator gets a stack
  instead of a sentence);
- ``crash``: exit 3 where 3 was not expected, death by a signal, or no exit within the
  time limit (supervisor would restart it forever);
- ``wrong``: any other exit code, or the expected words missing from the output;
- ``clean``: the expected exit code (2: the operator must fix something, 1: a running
  pipeline refused the request) with the expected words on one line.

Separately, a case may say what must survive it (a database byte for byte, a file outside
the directory a tool writes to, a running process); if that check fails the case counts as
``data lost`` whatever its class.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

TRACEBACK: Final = "Traceback (most recent call last)"
CLASSES: Final = ("clean", "traceback", "crash", "wrong")
EXIT_REFUSED: Final = 1
EXIT_OPERATIONAL: Final = 2
EXIT_CRASH: Final = 3
CASE_TIMEOUT_S: Final = 45.0
# As root, permissions do not stop anything: drop the capabilities that bypass them so that
# "read-only" and "no permission" mean what they say.
_DROP_DAC: Final = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


@dataclass
class World:
    """Where a case runs: its own scratch directory, rings directory and environment."""

    root: Path
    shm_dir: Path
    env: dict[str, str]
    template_db: Path  # a real, freshly initialised paper ledger database

    def path(self, name: str) -> Path:
        return self.root / name

    def fresh_db(self, data_dir: Path) -> Path:
        """A copy of the template ledger database in ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        target = data_dir / "ledger-paper.sqlite"
        shutil.copyfile(self.template_db, target)
        return target


Check = Callable[[World], str | None]  # None: all kept; else what was lost


@dataclass(frozen=True)
class Case:
    """One hostile input: ``argv`` (after ``python -m pipeline``) built in ``setup``."""

    name: str
    setup: Callable[[World], Sequence[str]]
    exit_code: int = EXIT_OPERATIONAL
    says: str = ""  # words that must appear on one line of stdout or stderr
    keeps: Check | None = None
    unprivileged: bool = False  # run without the root capabilities that bypass permissions
    shared: bool = False  # uses a process other cases use too: run alone, in table order
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    case: str
    kind: str  # one of CLASSES
    lost: str | None
    returncode: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.kind == "clean" and self.lost is None

    def explain(self) -> str:
        lost = f", lost: {self.lost}" if self.lost else ""
        return (f"{self.case}: {self.kind} (exit {self.returncode}{lost})\n"
                f"{self.output[-3000:]}")


def can_drop_privileges() -> bool:
    return os.geteuid() != 0 or shutil.which(_DROP_DAC[0]) is not None


def command(case: Case, argv: Sequence[str]) -> list[str]:
    prefix = list(_DROP_DAC) if case.unprivileged and os.geteuid() == 0 else []
    return [*prefix, sys.executable, "-m", "pipeline", *argv]


def run_case(case: Case, world: World) -> Outcome:
    """Set the case up, run it as a real process, classify what happened."""
    argv = case.setup(world)
    try:
        done = subprocess.run(command(case, argv), env={**world.env, **case.env},
                              cwd=world.root, capture_output=True, text=True,
                              timeout=CASE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        return Outcome(case.name, "crash", _lost(case, world), None,
                       f"no exit within {CASE_TIMEOUT_S} s\n{output}")
    output = done.stdout + done.stderr
    return Outcome(case.name, classify(case, done.returncode, output), _lost(case, world),
                   done.returncode, output)


def classify(case: Case, returncode: int, output: str) -> str:
    if TRACEBACK in output:
        return "traceback"
    if returncode < 0 or (returncode == EXIT_CRASH and case.exit_code != EXIT_CRASH):
        return "crash"
    said = any(case.says in line for line in output.splitlines())
    return "clean" if returncode == case.exit_code and said else "wrong"


def summary(outcomes: Sequence[Outcome]) -> str:
    """The counts the issue asks for: tried, clean, tracebacks, crashes, data lost."""
    counts = {kind: sum(o.kind == kind for o in outcomes) for kind in CLASSES}
    lost = sum(o.lost is not None for o in outcomes)
    lines = [f"adversarial cases tried: {len(outcomes)}, clean errors: {counts['clean']}, "
             f"tracebacks: {counts['traceback']}, crashes: {counts['crash']}, "
             f"wrong outcome: {counts['wrong']}, data lost: {lost}"]
    lines += [f"  {o.case}: {o.kind}" + (f", lost: {o.lost}" if o.lost else "")
              for o in outcomes if not o.ok]
    return "\n".join(lines)


def _lost(case: Case, world: World) -> str | None:
    return case.keeps(world) if case.keeps is not None else None


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""
