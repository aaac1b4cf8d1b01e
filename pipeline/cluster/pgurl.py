"""The consolidated ledger's PostgreSQL URL: from a flag or the environment, never printed.

The URL carries a password, so it is read from ``--postgres`` or, to keep it out of process
listings, from ``PIPELINE_CLUSTER_POSTGRES_URL``; logs and errors show it redacted.
"""

from __future__ import annotations

import os
from typing import Final

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pipeline.errors import OperationalError

ENV_VAR: Final = "PIPELINE_CLUSTER_POSTGRES_URL"
_DRIVER: Final = "postgresql+psycopg"


def postgres_url(flag: str | None, environ: dict[str, str] | None = None) -> URL:
    """The URL from ``flag`` or the environment, with the psycopg 3 driver."""
    text = flag or (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not text:
        raise OperationalError(f"no PostgreSQL URL: give --postgres URL or set {ENV_VAR}")
    try:
        url = make_url(text)
    except ArgumentError as exc:
        # The text itself may hold the password: say what is wrong, not what it was.
        raise OperationalError("the PostgreSQL URL is malformed: expected "
                               "postgresql://user:password@host:port/database") from exc
    if url.drivername not in ("postgresql", "postgres", _DRIVER):
        raise OperationalError(f"the PostgreSQL URL names {url.drivername!r}: expected "
                               "postgresql://user:password@host:port/database")
    return url.set(drivername=_DRIVER)


def redacted(url: URL) -> str:
    """``url`` fit for a log line: the password replaced by ***."""
    return url.render_as_string(hide_password=True)


def scrub(message: str, url: URL) -> str:
    """``message`` with ``url``'s password removed, for errors that may quote it."""
    return message.replace(url.password, "***") if url.password else message
