"""When the ledger may commit next, so fsyncs and WAL writes stay within budget.

Two limits apply together. Commits: at most ``commits_per_s``, i.e. a minimum gap of
``1 / commits_per_s`` between commits (each commit with synchronous=FULL is an fsync).
WAL bytes: a virtual clock that each commit pushes forward by ``wal_bytes / wal_bytes_per_s``
(a leaky bucket with no burst allowance), so the long-run WAL write rate never exceeds the
cap; idle time is not banked. While the pacer says wait, the ledger keeps reading reports
into the next, larger batch, so pacing trades a little latency for fewer, bigger commits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

WAL_FRAME_HEADER_BYTES: Final = 24
ESTIMATED_ROW_BYTES: Final = 200  # an order or fill row with its index entries, generously
ESTIMATED_FIXED_PAGES: Final = 12  # every table and index touched once, interior pages


def estimate_wal_bytes(rows_written: int, page_size: int = 4096) -> int:
    """Estimated WAL bytes of one commit: pages touched x (page_size + frame header).

    Rows are appended at the ends of their b-trees, so new rows share leaf pages:
    ``ceil(rows * ESTIMATED_ROW_BYTES / page_size)`` leaf pages, doubled for the unique
    index on client_order_id (random keys, so index pages are touched more sparsely), plus
    a fixed few pages every commit rewrites. Each page touched is written once per commit
    as a WAL frame of ``page_size`` bytes plus a 24-byte frame header. An empty commit
    writes nothing.
    """
    if rows_written < 0:
        raise ValueError(f"rows_written must be >= 0, got {rows_written}")
    if page_size <= 0:
        raise ValueError(f"page_size must be positive, got {page_size}")
    if rows_written == 0:
        return 0
    leaf_pages = math.ceil(rows_written * ESTIMATED_ROW_BYTES / page_size)
    pages = 2 * leaf_pages + ESTIMATED_FIXED_PAGES
    return pages * (page_size + WAL_FRAME_HEADER_BYTES)


class CommitPacer:
    """Decides how long to wait before the next commit; the clock is injectable for tests."""

    def __init__(
        self,
        commits_per_s: float,
        wal_bytes_per_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(commits_per_s) and commits_per_s > 0):
            raise ValueError(f"commits_per_s must be a positive number, got {commits_per_s}")
        if not (math.isfinite(wal_bytes_per_s) and wal_bytes_per_s > 0):
            raise ValueError(f"wal_bytes_per_s must be a positive number, got {wal_bytes_per_s}")
        self._min_gap_s = 1.0 / commits_per_s
        self._wal_bytes_per_s = wal_bytes_per_s
        self._clock = clock
        self._next_commit_s = -math.inf  # earliest time allowed by the commit budget
        self._wal_free_s = -math.inf  # when the WAL bucket has drained

    def delay_s(self, now: float | None = None) -> float:
        """Seconds to wait before the next commit (0.0 means commit now)."""
        now = self._clock() if now is None else now
        return max(0.0, self._next_commit_s - now, self._wal_free_s - now)

    def record(self, now: float | None = None, wal_bytes: int = 0) -> None:
        """Account for a commit that finished at ``now`` and wrote about ``wal_bytes``."""
        if wal_bytes < 0:
            raise ValueError(f"wal_bytes must be >= 0, got {wal_bytes}")
        now = self._clock() if now is None else now
        self._next_commit_s = now + self._min_gap_s
        self._wal_free_s = max(self._wal_free_s, now) + wal_bytes / self._wal_bytes_per_s
