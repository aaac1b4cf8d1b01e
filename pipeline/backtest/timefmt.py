"""Times for people and machines: ISO 8601 UTC instants and short human durations.

Reports print source time only (never the wall clock), so the same input always prints
the same text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import numpy as np

_NS_PER_S: Final = 1_000_000_000
_UNITS: Final = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def iso_utc(time_ns: int) -> str:
    """``2023-03-24T10:15:00Z``; milliseconds are shown only when the instant has them."""
    seconds, rest_ns = divmod(int(time_ns), _NS_PER_S)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    millis = rest_ns // 1_000_000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def iso_utc_array(times_ns: np.ndarray) -> list[str]:
    """:func:`iso_utc` of many instants at once (milliseconds shown if any has them)."""
    at = np.asarray(times_ns, dtype=np.int64)
    stamps = at.astype("datetime64[ns]")
    if np.any(at % _NS_PER_S // 1_000_000):
        text = np.datetime_as_string(stamps, unit="ms")
    else:
        text = np.datetime_as_string(stamps, unit="s")
    return [f"{value}Z" for value in text.tolist()]


def human_duration(seconds: float) -> str:
    """``3d 4h``: the two largest non-zero units, rounded down to whole seconds."""
    left = max(0, int(seconds))
    if left == 0:
        return "0s"
    parts: list[str] = []
    for suffix, size in _UNITS:
        count, left = divmod(left, size)
        if count or parts:
            parts.append(f"{count}{suffix}")
        if len(parts) == 2:
            break
    return " ".join(part for part in parts if not part.startswith("0"))
