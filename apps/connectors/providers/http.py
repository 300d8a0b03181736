"""The one HTTP helper every provider uses: httpx with explicit timeouts, bounded retries and typed errors.

Retry policy (per request):

* 429: wait `Retry-After` (seconds or HTTP-date) when given, else exponential backoff with jitter. A Retry-After
  longer than `retry_after_cap` is not slept: ProviderRateLimited(retry_after) is raised at once so the task can
  reschedule itself instead of holding a worker.
* 5xx (incl. Anthropic's 529), timeouts and connection/protocol errors: exponential backoff with jitter.
* 401/403: ProviderAuthError, never retried. Other 4xx/3xx: ProviderError, never retried.
* After `max_attempts`: ProviderRateLimited (429) or ProviderUnavailable (everything else).

Every attempt is recorded in `HttpClient.attempts` and passed to `HttpSettings.on_attempt`, so the caller can log
retries. Messages never contain the credential: error reasons are short, truncated and scrubbed.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .base import MalformedPage, ProviderAuthError, ProviderError, ProviderRateLimited, ProviderUnavailable

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504, 520, 522, 524, 529})
_REASON_LIMIT = 120
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}")


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt: what happened and how long we waited before the next one (0 if none followed)."""

    method: str
    path: str  # path only, no query string and no host
    number: int
    status: int | None  # None for timeouts / connection errors
    error: str | None  # "timeout", "connection error", … or None
    waited: float = 0.0
    retry_after: float | None = None


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 10.0
    pool_timeout: float = 5.0
    max_attempts: int = 5
    backoff_base: float = 1.0  # seconds before the 2nd attempt; doubles each time
    backoff_max: float = 30.0
    jitter: float = 0.5  # up to this fraction of each backoff is randomised away
    retry_after_cap: float = 120.0  # longest Retry-After we are willing to sleep
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random  # jitter source in [0, 1)
    now: Callable[[], float] = time.time  # for HTTP-date Retry-After values
    on_attempt: Callable[[Attempt], None] | None = None
    user_agent: str = "spendctl-connectors/1.0"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )

    def backoff(self, attempt_number: int) -> float:
        """Delay after failed attempt `attempt_number` (1-based): base·2^(n-1), capped, minus random jitter."""
        delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt_number - 1)))
        return max(0.0, delay * (1 - self.jitter * self.rng()))


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove credentials (exact secrets and anything key-shaped) and shorten to a one-line reason."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _KEY_LIKE.sub("[redacted]", text)
    text = " ".join(text.split())
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 1] + "…"
    return text


def error_reason(response: httpx.Response, secrets: Iterable[str]) -> str:
    """A short reason from a provider error body ({"error": {"type"/"code", "message"}}), never the raw body."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return f"HTTP {response.status_code}"
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return f"HTTP {response.status_code}"
    kind = err.get("type") or err.get("code")
    message = err.get("message")
    parts = [
        str(p) for p in (kind, message) if isinstance(p, str | int) and not isinstance(p, bool) and p != ""
    ]
    return scrub(": ".join(parts), secrets) if parts else f"HTTP {response.status_code}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_page(content: bytes, page_number: int) -> Any:
    """JSON with every non-integer number as Decimal. Non-JSON / truncated / NaN → MalformedPage(page_number)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPage(page_number, "response body is not UTF-8 text") from None
    if not text.strip():
        raise MalformedPage(page_number, "empty response body")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        end = len(text.rstrip())
        if exc.pos >= end or exc.msg.startswith("Unterminated string"):
            reason = "truncated JSON (the body ends before the document is complete)"
        else:
            reason = f"response is not valid JSON ({exc.msg} at char {exc.pos})"
        raise MalformedPage(page_number, reason) from None
    except ValueError as exc:  # NaN / Infinity
        raise MalformedPage(page_number, f"response is not valid JSON ({exc})") from None


class HttpClient:
    """A small retrying JSON-over-HTTP client bound to one base URL and one credential."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: dict[str, str],
        settings: HttpSettings,
        secrets: Sequence[str] = (),
        label: str = "provider",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.label = label
        self._secrets = tuple(s for s in secrets if s)
        self.attempts: list[Attempt] = []
        from spendctl.common import outbound

        # The one guarded client: user-entered base URLs cannot reach private or metadata addresses.
        self._client = outbound.client(
            headers={"Accept": "application/json", "User-Agent": settings.user_agent, **headers},
            timeout=settings.timeout,
        )

    def __repr__(self) -> str:
        return f"<HttpClient {self.base_url!r}>"

    def close(self) -> None:
        self._client.close()

    def get_json(self, path: str, params: Sequence[tuple[str, str]] = (), *, page_number: int = 1) -> Any:
        response = self.request("GET", path, params)
        return parse_json_page(response.content, page_number)

    def _record(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        if self.settings.on_attempt is not None:
            self.settings.on_attempt(attempt)

    def request(self, method: str, path: str, params: Sequence[tuple[str, str]] = ()) -> httpx.Response:
        s = self.settings
        url = self.base_url + path
        what = f"{self.label} {method} {path}"
        for number in range(1, s.max_attempts + 1):
            status: int | None = None
            error: str | None = None
            retry_after: float | None = None
            try:
                response = self._client.request(method, url, params=list(params))
            except httpx.TimeoutException as exc:
                error = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:  # connect errors, resets, incomplete bodies
                from spendctl.common.outbound import refused_reason

                refused = refused_reason(exc)
                if refused:  # a refused address is not retried
                    self._record(Attempt(method, path, number, None, "refused"))
                    raise ProviderError(f"{what}: {refused}") from None
                error = f"connection error ({type(exc).__name__})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._record(Attempt(method, path, number, status, None))
                    return response
                if status in (401, 403):
                    self._record(Attempt(method, path, number, status, None))
                    reason = error_reason(response, self._secrets)
                    raise ProviderAuthError(
                        f"{what}: HTTP {status}, the key is invalid or lacks permission ({reason})",
                        status=status,
                    )
                if status == 429:
                    retry_after = parse_retry_after(response.headers.get("retry-after"), now=s.now())
                elif status not in RETRYABLE_STATUSES and not 500 <= status < 600:
                    self._record(Attempt(method, path, number, status, None))
                    reason = error_reason(response, self._secrets)
                    raise ProviderError(f"{what}: HTTP {status} ({reason})", status=status)

            if number == s.max_attempts:
                self._record(Attempt(method, path, number, status, error, 0.0, retry_after))
                break
            if retry_after is not None and retry_after > s.retry_after_cap:
                self._record(Attempt(method, path, number, status, error, 0.0, retry_after))
                raise ProviderRateLimited(
                    f"{what}: rate limited, provider asks to retry after {retry_after:.0f}s",
                    retry_after=retry_after,
                )
            wait = retry_after if retry_after is not None else s.backoff(number)
            self._record(Attempt(method, path, number, status, error, wait, retry_after))
            logger.warning(
                "%s: attempt %d/%d failed (%s), retrying in %.2fs",
                what,
                number,
                s.max_attempts,
                error or f"HTTP {status}",
                wait,
            )
            s.sleep(wait)

        if status == 429:
            raise ProviderRateLimited(
                f"{what}: still rate limited after {s.max_attempts} attempts", retry_after=retry_after
            )
        raise ProviderUnavailable(
            f"{what}: failed after {s.max_attempts} attempts (last: {error or f'HTTP {status}'})",
            status=status,
        )
