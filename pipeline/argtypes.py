"""argparse types for numbers an operator types: refused at parse time, naming the flag.

``float()`` accepts ``nan`` and ``inf`` and ``int()`` any size: a ``--duration nan`` would
run forever, an ``--expires-in inf`` or a ``--limit`` of 10^20 would end in a traceback
far from the command line. argparse turns the ``ArgumentTypeError`` raised here into
``pipeline ...: error: argument --flag: <reason>`` and exit 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_float(maximum: float = math.inf) -> Callable[[str], float]:
    """A finite number > 0 and <= ``maximum`` (seconds, usually)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and 0 < value <= maximum):
            limit = f" and at most {maximum:g}" if math.isfinite(maximum) else ""
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number > 0{limit}")
        return value
    return parse


def finite_float(minimum: float, maximum: float) -> Callable[[str], float]:
    """A finite number from ``minimum`` to ``maximum``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number from "
                                             f"{minimum:g} to {maximum:g}")
        return value
    return parse


def positive_int(maximum: int) -> Callable[[str], int]:
    """A whole number from 1 to ``maximum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be from 1 to {maximum}")
        return value
    return parse
