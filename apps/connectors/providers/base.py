"""The one interface every provider connector implements.

A provider client reads a provider's usage and cost reports for a UTC window and yields them as pages of frozen
dataclasses. It knows nothing about orgs, the database or Celery: `apps.connectors.services` owns the sync loop,
stores the cursor of the last committed page and writes rows through `apps.usage.services`.

Conventions shared by every provider (see tests/fixtures/provider_samples/SPEC.md for the sources):

* Times are timezone-aware UTC datetimes; a `Window` is [start, end).
* Money is `Decimal` (parsed from the raw JSON text, never through float), in currency units (USD, not cents).
* Tokens: `UsageRow.input_tokens` is ALL input, including cache reads and cache writes; the cache counters are parts
  of it. `output_tokens` includes reasoning tokens.
* Dimensions are nullable even when grouped by; `dimensions_key` is derived from every dimension value including
  None, so re-reading a bucket yields the same key and the ledger can upsert instead of double counting.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .http import HttpClient, HttpSettings

DAY = timedelta(days=1)

# --------------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base class of every connector error. Messages never contain the credential or a response body."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ProviderAuthError(ProviderError):
    """401/403, or a key of the wrong kind: the credential is invalid or lacks permission. Do not retry."""


class ProviderRateLimited(ProviderError):
    """429 that outlasted the retries (or asked for a longer wait than the client may sleep)."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx / 529 / timeouts / connection errors that outlasted the retries. Retry the sync later."""


class MalformedPage(ProviderError):
    """A page that is not JSON, is truncated, or lacks a required field / has a wrong type.

    Rows of earlier pages were already yielded; the caller keeps the cursor of the last good page.
    """

    def __init__(self, page_number: int, reason: str) -> None:
        super().__init__(f"page {page_number}: {reason}")
        self.page_number = page_number
        self.reason = reason


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


def _as_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """A UTC time window, end exclusive. Aware datetimes in other zones are converted to UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        start = _as_utc(self.start, "start")
        end = _as_utc(self.end, "end")
        if end <= start:
            raise ValueError("window end must be after its start")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @classmethod
    def for_days(cls, first: date, last_inclusive: date) -> Window:
        return cls(utc_midnight(first), utc_midnight(last_inclusive) + DAY)

    @property
    def is_day_aligned(self) -> bool:
        return all(t.hour == t.minute == t.second == t.microsecond == 0 for t in (self.start, self.end))

    def require_day_aligned(self) -> None:
        """Daily-bucket APIs need midnight-aligned windows (OpenAI does not snap usage buckets)."""
        if not self.is_day_aligned:
            raise ValueError("this provider reports daily buckets: window start and end must be 00:00 UTC")

    def days(self) -> list[date]:
        """Every UTC date whose day overlaps the window."""
        day = self.start.date()
        out = []
        while utc_midnight(day) < self.end:
            out.append(day)
            day += DAY
        return out


def make_dimensions_key(kind: str, values: Mapping[str, Any]) -> str:
    """A stable 64-char key from a row kind and every dimension value (None included).

    Canonical JSON (sorted keys) hashed with SHA-256, so it fits a CharField and never depends on dict order.
    """
    canonical = json.dumps({"kind": kind, **values}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class UsageRow:
    """One result row of a usage report: one bucket × one combination of dimension values."""

    provider: str
    endpoint: str  # "completions", "embeddings", "images", … (OpenAI); "messages" (Anthropic); "activity" (OpenRouter)
    bucket_start: datetime
    bucket_width: str  # "1d" / "1h"
    model_raw: str  # as received; "" when the endpoint has no model (OpenAI vector_stores, code_interpreter_sessions)
    project_id: str | None = None
    workspace_id: str | None = None
    api_key_id: str | None = None
    user_id: str | None = None
    service_tier: str | None = None
    batch: bool = False
    context_window: str | None = None
    requests: int = 0
    input_tokens: int = 0  # ALL input: uncached + cache reads + cache writes (5m and 1h)
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # 5m + 1h
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0  # includes reasoning
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0  # part of input_tokens (OpenAI: uncached + cached audio)
    output_audio_tokens: int = 0
    web_searches: int = 0
    # Non-token quantities (images, characters, seconds, sessions, usage_bytes) and modality details that have no
    # field of their own (e.g. input_cached_audio_tokens, input_image_tokens); zero modality counters are left out.
    units: dict[str, int | Decimal] = field(default_factory=dict)
    reported_cost: Decimal | None = None  # USD as reported with the usage (OpenRouter `usage`)
    # Dimensions without a field of their own (OpenAI image size/source, Anthropic inference_geo, OpenRouter
    # provider endpoint); part of dimensions_key.
    extra_dimensions: dict[str, str | None] = field(default_factory=dict)
    dimensions_key: str = ""  # computed from endpoint + every dimension value when left empty

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket_start", _as_utc(self.bucket_start, "bucket_start"))
        if not self.dimensions_key:
            object.__setattr__(self, "dimensions_key", make_dimensions_key("usage", self.dimensions()))

    def dimensions(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model_raw,
            "project_id": self.project_id,
            "workspace_id": self.workspace_id,
            "api_key_id": self.api_key_id,
            "user_id": self.user_id,
            "service_tier": self.service_tier,
            "batch": self.batch,
            "context_window": self.context_window,
            "extra": dict(sorted(self.extra_dimensions.items())),
        }


@dataclass(frozen=True)
class CostRow:
    """One result row of a cost report, in USD units (Anthropic cents already divided by 100)."""

    provider: str
    bucket_start: datetime
    bucket_width: str
    amount: Decimal
    currency: str = "USD"  # upper case
    project_id: str | None = None
    workspace_id: str | None = None
    line_item: str | None = None  # label as received (OpenAI line_item, Anthropic description)
    model: str | None = (
        None  # Anthropic's structured model; OpenAI: parsed from "<model>, input" style labels
    )
    cost_type: str | None = None
    token_type: str | None = None
    service_tier: str | None = None
    quantity: Decimal | None = None  # OpenAI `quantity` (billed quantity of the line) when reported
    quantity_unit: str | None = None
    extra_dimensions: dict[str, str | None] = field(default_factory=dict)
    dimensions_key: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket_start", _as_utc(self.bucket_start, "bucket_start"))
        if not isinstance(self.amount, Decimal):
            raise TypeError("CostRow.amount must be a Decimal")
        object.__setattr__(self, "currency", self.currency.upper())
        if not self.dimensions_key:
            object.__setattr__(self, "dimensions_key", make_dimensions_key("cost", self.dimensions()))

    def dimensions(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "project_id": self.project_id,
            "workspace_id": self.workspace_id,
            "line_item": self.line_item,
            "model": self.model,
            "cost_type": self.cost_type,
            "token_type": self.token_type,
            "service_tier": self.service_tier,
            "currency": self.currency,
            "extra": dict(sorted(self.extra_dimensions.items())),
        }


@dataclass(frozen=True)
class Page:
    """One provider response (or one day for OpenRouter/sandbox), in order.

    `next_cursor` is the cursor to pass back to resume right after this page (None after the last page): commit the
    page's rows, store `next_cursor`, and an interrupted sync resumes with the following page. `number` is the
    1-based position of the page within this fetch call. `endpoint` names the report the page came from and
    `bucket_starts` lists every bucket the page covered, including empty ones, so a sync can zero rows that a
    re-read no longer reports.
    """

    rows: list
    next_cursor: str | None
    number: int
    endpoint: str = ""
    bucket_starts: tuple[datetime, ...] = ()


# --------------------------------------------------------------------------------------------------------------------
# The client interface
# --------------------------------------------------------------------------------------------------------------------


class ProviderClient(abc.ABC):
    """Reads one provider account. Subclasses set `key`, `label`, `default_base_url` and register themselves."""

    key: ClassVar[str]
    label: ClassVar[str]
    default_base_url: ClassVar[str] = ""
    # A trailing path that users often paste with the base URL ("https://api.openai.com/v1"); stripped.
    base_url_suffix: ClassVar[str] = ""

    def __init__(
        self, *, api_key: str, base_url: str | None = None, http: HttpSettings | None = None
    ) -> None:
        from .http import HttpSettings

        self._api_key = api_key
        self.base_url = self._normalise_base_url(base_url or self.default_base_url)
        self.http_settings = http or HttpSettings()
        self._http: HttpClient | None = None

    def __repr__(self) -> str:  # never show the credential
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    @classmethod
    def _normalise_base_url(cls, url: str) -> str:
        url = url.strip().rstrip("/")
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if cls.base_url_suffix and url.endswith(cls.base_url_suffix):
            url = url[: -len(cls.base_url_suffix)]
        return url

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the credential; overridden per provider."""
        return {"Authorization": f"Bearer {self._api_key}"}

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            from .http import HttpClient

            self._http = HttpClient(
                base_url=self.base_url,
                headers=self.auth_headers(),
                settings=self.http_settings,
                secrets=(self._api_key,),
                label=self.label,
            )
        return self._http

    @property
    def attempts(self) -> list:
        """Every HTTP attempt made so far (see `http.Attempt`), for logging retries."""
        return self._http.attempts if self._http is not None else []

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def validate_credentials(self) -> None:
        """Make one cheap authenticated call. Raises ProviderAuthError if the key is invalid or lacks permission."""

    @abc.abstractmethod
    def fetch_usage(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        """Yield pages of UsageRow for the window, oldest first, resuming at `cursor` when given."""

    @abc.abstractmethod
    def fetch_costs(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        """Yield pages of CostRow. Providers without a separate cost endpoint return an empty iterator."""
