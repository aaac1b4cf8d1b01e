"""HTTP for the price providers: cached, rate-limited, 429-aware, with short timeouts.

Every provider (Coingecko, Hermes, Jupiter) goes through :class:`HttpClient`:

- responses are cached by requests-cache in a SQLite file in the data directory for
  ``cache_ttl_s``: a restart within the TTL costs no call, and the API key headers are
  redacted from what is stored;
- a sliding-window :class:`RateLimiter` keeps calls under ``calls_per_min``; its call log
  and any ``Retry-After`` block are written to a file, so a restart loop cannot hammer a
  provider into a ban;
- a 429 honours ``Retry-After`` (seconds or an HTTP date; the body may be an HTML page,
  so it is never parsed) and raises :class:`RateLimitedError`.

Runs only on the live sources' thread, never on the tick path.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

import requests
import requests_cache

from pipeline.errors import BadInputError, TemporaryError

WINDOW_S: Final = 60.0
DEFAULT_RETRY_AFTER_S: Final = 60.0  # a 429 without a usable Retry-After
SECRET_HEADERS: Final = ("x-cg-demo-api-key", "x-cg-pro-api-key", "x-api-key", "Authorization")
_log = logging.getLogger(__name__)

RequestFn = Callable[[str, str], None]  # (provider name, "hit" | "miss"): one HTTP request


class RateLimitedError(TemporaryError):
    """The provider (or our own limiter) says wait ``retry_after_s`` before the next call."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimiter:
    """At most ``calls_per_min`` calls in any 60 s, remembered across restarts.

    Wall-clock (Unix) seconds, because monotonic time does not survive a restart. The
    state file is rewritten atomically after each call (a few per minute).
    """

    def __init__(self, path: Path, calls_per_min: float,
                 clock_s: Callable[[], float] = time.time) -> None:
        self._path = path
        self._limit = max(1, int(calls_per_min))
        self._clock_s = clock_s
        self._calls: list[float] = []
        self._blocked_until = 0.0
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            self._calls = [float(t) for t in state.get("calls", [])][-self._limit:]
            self._blocked_until = float(state.get("blocked_until", 0.0))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            _log.warning("ignoring unreadable rate-limit state %s: %s", path, exc,
                         extra={"event": "ingest.ratelimit_state_unreadable"})

    def wait_s(self) -> float:
        """Seconds until a call may be made (0: now)."""
        now = self._clock_s()
        self._calls = [t for t in self._calls if t > now - WINDOW_S]
        wait = max(0.0, self._blocked_until - now)
        if len(self._calls) >= self._limit:
            wait = max(wait, self._calls[-self._limit] + WINDOW_S - now)
        return wait

    def record(self) -> None:
        """Count a call made now."""
        self._calls.append(self._clock_s())
        self._save()

    def block(self, seconds: float) -> None:
        """Make no call for ``seconds`` (a provider's Retry-After)."""
        self._blocked_until = max(self._blocked_until, self._clock_s() + seconds)
        self._save()

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"calls": self._calls[-self._limit:],
                                   "blocked_until": self._blocked_until}), encoding="utf-8")
        os.replace(tmp, self._path)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(text).timestamp() - now_s)
    except (TypeError, ValueError, IndexError):
        return None


class HttpClient:
    """GET JSON from one provider; see the module docstring for what each call goes through."""

    def __init__(self, name: str, base_url: str, *, cache_dir: Path, cache_ttl_s: float,
                 calls_per_min: float, timeouts_s: tuple[float, float],
                 max_retry_after_s: float, headers: Mapping[str, str] | None = None,
                 clock_s: Callable[[], float] = time.time,
                 on_request: RequestFn | None = None) -> None:
        self.name = name
        self._on_request = on_request
        self._base_url = base_url.rstrip("/")
        self._timeouts_s = timeouts_s
        self._max_retry_after_s = max_retry_after_s
        self._headers = dict(headers or {})
        self._clock_s = clock_s
        cache_dir.mkdir(parents=True, exist_ok=True)
        self._session = requests_cache.CachedSession(
            str(cache_dir / f"{name}.sqlite"), backend="sqlite",
            expire_after=cache_ttl_s if cache_ttl_s > 0 else requests_cache.DO_NOT_CACHE,
            allowable_codes=(200,), ignored_parameters=list(SECRET_HEADERS),
            stale_if_error=False)
        self.limiter = RateLimiter(cache_dir / f"{name}.ratelimit.json", calls_per_min, clock_s)

    def get_json(self, path: str, params: Mapping[str, Any]) -> Any:
        """The decoded JSON body of ``GET base_url + path``.

        Raises RateLimitedError (wait), TemporaryError (timeout, connection, 5xx or other
        non-200) or BadInputError (a 200 whose body is not JSON).
        """
        url = self._base_url + path
        kwargs: dict[str, Any] = {"params": params, "headers": self._headers,
                                  "timeout": self._timeouts_s}
        response = self._session.get(url, only_if_cached=True, **kwargs)
        if response.status_code == 504:  # requests-cache: not in the cache
            wait_s = self.limiter.wait_s()
            if wait_s > 0:
                raise RateLimitedError(
                    f"{self.name}: own rate limit, next call in {wait_s:.1f} s", wait_s)
            self.limiter.record()
            self._count(from_cache=False)
            try:
                response = self._session.get(url, **kwargs)
            except requests.Timeout as exc:
                raise TemporaryError(f"{self.name}: timed out after {self._timeouts_s} s") from exc
            except requests.RequestException as exc:
                raise TemporaryError(f"{self.name}: request failed: {type(exc).__name__}") from exc
        else:
            self._count(from_cache=response.from_cache)
        if response.status_code == 429:
            retry_s = parse_retry_after(response.headers.get("Retry-After"), self._clock_s())
            retry_s = min(DEFAULT_RETRY_AFTER_S if retry_s is None else retry_s,
                          self._max_retry_after_s)
            self.limiter.block(retry_s)
            raise RateLimitedError(
                f"{self.name}: 429 Too Many Requests, retry after {retry_s:.0f} s", retry_s)
        if response.status_code != 200:
            raise TemporaryError(f"{self.name}: HTTP {response.status_code}: "
                                 f"{_snippet(response.text)}")
        try:
            return response.json()
        except ValueError as exc:
            raise BadInputError(f"{self.name}: malformed body "
                                f"({response.headers.get('Content-Type')}): "
                                f"{_snippet(response.text)}") from exc

    def _count(self, *, from_cache: bool) -> None:
        """One request: answered by the cache (hit), or about to go to the provider (miss:
        counted before it is sent, so one that times out is counted too; one our own rate
        limiter holds back is not a request)."""
        if self._on_request is not None:
            self._on_request(self.name, "hit" if from_cache else "miss")

    def close(self) -> None:
        self._session.close()  # type: ignore[no-untyped-call]


def _snippet(text: str, limit: int = 120) -> str:
    """The start of a body for a log line, on one line."""
    return " ".join(text[:limit].split())
