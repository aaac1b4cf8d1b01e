"""Follow a ring across an orderly restart of its writer.

An orderly writer unlinks its segment and marks it closed; a reader that has consumed all
it holds then opens the segment by name again, which is either the writer's new one or one
it creates itself (either side may create). A crashed writer never marks the segment, so the
restarted writer reuses it and readers simply continue.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.ring import RingReader, RingSpec


def follow(reader: RingReader, spec: RingSpec, name: str, log: logging.Logger,
           **ring_kwargs: Any) -> RingReader:
    """Return ``reader``, or a fresh one if its writer closed the segment and it is drained."""
    if not reader.closed or reader.available() > 0:
        return reader
    reader.close()
    log.info("writer closed the ring in order; re-attaching",
             extra={"event": "ring.reattach", "ring": spec.name, "reader": name})
    return RingReader(spec, name, **ring_kwargs)
