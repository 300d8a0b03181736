"""A provider without HTTP: deterministic, realistic demo usage and costs for any window.

The demo org uses OpenAI (gpt-5, gpt-5-mini incl. batch, gpt-4.1-nano, text-embedding-3-small) and Anthropic
(Claude Sonnet 4.5, Haiku 4.5 incl. batch, Opus 4.6 with 1-hour cache writes and web search). Rows carry the real
provider in `UsageRow.provider` ("openai"/"anthropic"), so pricing and attribution treat them like synced rows.

Every number is a function of (UTC day, model, dimension) only, derived from SHA-256, so the same window always
yields identical rows, and a day looks the same whichever window it is read in. Weekends are quieter and volume
drifts on a four-week cycle. Costs are the list price of the usage (batch at half price), in the shapes of the real
cost reports: OpenAI-style "<model>, input" line items and Anthropic-style structured model/token_type rows.

Cursor: the ISO date (`YYYY-MM-DD`) of the next day; each UTC day overlapping the window is one Page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from .base import DAY, CostRow, Page, ProviderClient, UsageRow, Window, utc_midnight
from .registry import register

_MTOK = Decimal(1_000_000)
_BATCH_DISCOUNT = Decimal("0.5")
_WEB_SEARCH_PRICE = Decimal("0.01")  # $10 per 1000 searches
_WEEKDAY_FACTOR = (1.0, 1.04, 1.06, 1.02, 0.93, 0.52, 0.46)


@dataclass(frozen=True)
class _Prices:  # USD per million tokens
    input: Decimal
    cache_read: Decimal
    output: Decimal
    cache_write_5m: Decimal = Decimal(0)
    cache_write_1h: Decimal = Decimal(0)


@dataclass(frozen=True)
class _Model:
    provider: str
    endpoint: str
    model: str
    display: str  # for Anthropic-style descriptions
    requests: int  # weekday requests per day, all dimensions together
    input_per_request: int
    output_per_request: int
    prices: _Prices
    cache_read_share: float = 0.0
    cache_write_share: float = 0.0
    cache_write_1h_share: float = 0.0  # of the cache writes
    reasoning_share: float = 0.0  # of the output
    batch_share: float = 0.0  # of the requests
    web_searches: int = 0  # per weekday
    scopes: tuple[tuple[str, str, float], ...] = ()  # (project/workspace, api key, share)


_OPENAI_APP = ("proj_demoApp4Qm8ZtR1vWb7nKc2", "key_demoWeb7pLm2QxV9sT")
_OPENAI_DATA = ("proj_demoData7Tn2Vx5Jk9Pq1Rw", "key_demoEtl5Jd8Fg1Ka3M")
_ANT_SUPPORT = ("wrkspc_demoSupport01HZk7Qm3V", "apikey_demoBot01Rk4T7wYz2B")
_ANT_RESEARCH = ("wrkspc_demoResearch01J3aDf6G", "apikey_demoLab01Xb6Cd9Ef2G")

MODELS: tuple[_Model, ...] = (
    _Model(
        "openai", "completions", "gpt-5-mini-2025-08-07", "GPT-5 mini", 6200, 1900, 290,
        _Prices(Decimal("0.25"), Decimal("0.025"), Decimal("2.00")),
        cache_read_share=0.42, reasoning_share=0.55, batch_share=0.35,
        scopes=(_OPENAI_APP + (0.7,), _OPENAI_DATA + (0.3,)),
    ),
    _Model(
        "openai", "completions", "gpt-5-2025-08-07", "GPT-5", 330, 1900, 310,
        _Prices(Decimal("1.25"), Decimal("0.125"), Decimal("10.00")),
        cache_read_share=0.32, reasoning_share=0.62,
        scopes=(_OPENAI_APP + (1.0,),),
    ),
    _Model(
        "openai", "completions", "gpt-4.1-nano-2025-04-14", "GPT-4.1 nano", 19500, 330, 21,
        _Prices(Decimal("0.10"), Decimal("0.025"), Decimal("0.40")),
        cache_read_share=0.16,
        scopes=(_OPENAI_DATA + (1.0,),),
    ),
    _Model(
        "openai", "embeddings", "text-embedding-3-small", "text-embedding-3-small", 4800, 3800, 0,
        _Prices(Decimal("0.02"), Decimal(0), Decimal(0)),
        scopes=(_OPENAI_DATA + (1.0,),),
    ),
    _Model(
        "anthropic", "messages", "claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", 1400, 3700, 180,
        _Prices(Decimal("3"), Decimal("0.30"), Decimal("15"), Decimal("3.75"), Decimal("6")),
        cache_read_share=0.71, cache_write_share=0.03,
        scopes=(_ANT_SUPPORT + (0.8,), _ANT_RESEARCH + (0.2,)),
    ),
    _Model(
        "anthropic", "messages", "claude-haiku-4-5-20251001", "Claude Haiku 4.5", 5100, 2100, 290,
        _Prices(Decimal("1"), Decimal("0.10"), Decimal("5"), Decimal("1.25"), Decimal("2")),
        cache_read_share=0.12, cache_write_share=0.005, batch_share=0.4,
        scopes=(_ANT_SUPPORT + (1.0,),),
    ),
    _Model(
        "anthropic", "messages", "claude-opus-4-6", "Claude Opus 4.6", 180, 5300, 540,
        _Prices(Decimal("5"), Decimal("0.50"), Decimal("25"), Decimal("6.25"), Decimal("10")),
        cache_read_share=0.58, cache_write_share=0.07, cache_write_1h_share=1.0, web_searches=40,
        scopes=(_ANT_RESEARCH + (1.0,),),
    ),
)  # fmt: skip


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (SHA-256; independent of PYTHONHASHSEED and platform)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _volume(day: date, *parts: object) -> float:
    """Weekday seasonality × a four-week ±10 % triangle wave × ±8 % noise (only + − × ÷: same result everywhere)."""
    wave = 0.9 + 0.2 * abs(day.toordinal() % 28 - 14) / 14
    return _WEEKDAY_FACTOR[day.weekday()] * wave * (0.92 + 0.16 * _unit(day.isoformat(), *parts))


def usage_rows_for_day(day: date) -> list[UsageRow]:
    rows: list[UsageRow] = []
    start = utc_midnight(day)
    for m in MODELS:
        total_requests = round(m.requests * _volume(day, m.model))
        for index, (scope, api_key_id, share) in enumerate(m.scopes):
            requests = round(total_requests * share)
            batch_requests = round(requests * m.batch_share) if index == 0 else 0
            for batch, count in ((False, requests - batch_requests), (True, batch_requests)):
                if count <= 0:
                    continue
                jitter = 0.95 + 0.1 * _unit(day.isoformat(), m.model, scope, batch)
                input_tokens = round(count * m.input_per_request * jitter)
                output_tokens = round(count * m.output_per_request * jitter)
                cache_read = 0 if batch else round(input_tokens * m.cache_read_share)
                cache_write = 0 if batch else round(input_tokens * m.cache_write_share)
                cache_write_1h = round(cache_write * m.cache_write_1h_share)
                is_anthropic = m.provider == "anthropic"
                rows.append(
                    UsageRow(
                        provider=m.provider,
                        endpoint=m.endpoint,
                        bucket_start=start,
                        bucket_width="1d",
                        model_raw=m.model,
                        project_id=None if is_anthropic else scope,
                        workspace_id=scope if is_anthropic else None,
                        api_key_id=api_key_id,
                        service_tier=("batch" if batch else "standard") if is_anthropic else None,
                        batch=batch,
                        context_window="0-200k" if is_anthropic else None,
                        requests=0
                        if is_anthropic
                        else count,  # Anthropic's usage report has no request count
                        input_tokens=input_tokens,
                        cache_read_tokens=cache_read,
                        cache_write_tokens=cache_write,
                        cache_write_1h_tokens=cache_write_1h,
                        output_tokens=output_tokens,
                        reasoning_tokens=round(output_tokens * m.reasoning_share),
                        web_searches=0 if batch else round(m.web_searches * _volume(day, m.model, "web")),
                    )
                )
    return rows


def _token_costs(m: _Model, row: UsageRow) -> list[tuple[str, str, int, Decimal]]:
    """(label direction, Anthropic token_type, tokens, USD) for one usage row at list price."""
    p = m.prices
    write_5m = row.cache_write_tokens - row.cache_write_1h_tokens
    uncached = row.input_tokens - row.cache_read_tokens - row.cache_write_tokens
    parts = [
        ("Input Tokens", "uncached_input_tokens", uncached, p.input),
        ("Input Tokens, Cache Hit", "cache_read_input_tokens", row.cache_read_tokens, p.cache_read),
        ("Input Tokens, Cache Write", "cache_creation.ephemeral_5m_input_tokens", write_5m, p.cache_write_5m),
        ("Input Tokens, Cache Write (1h)", "cache_creation.ephemeral_1h_input_tokens", row.cache_write_1h_tokens,
         p.cache_write_1h),
        ("Output Tokens", "output_tokens", row.output_tokens, p.output),
    ]  # fmt: skip
    factor = _BATCH_DISCOUNT if row.batch else Decimal(1)
    return [
        (label, kind, n, Decimal(n) * price * factor / _MTOK)
        for label, kind, n, price in parts
        if n and price
    ]


_OPENAI_DIRECTIONS = {
    "uncached_input_tokens": "input",
    "cache_read_input_tokens": "cached input",
    "output_tokens": "output",
}


def cost_rows_for_day(day: date) -> list[CostRow]:
    start = utc_midnight(day)
    by_model = {m.model: m for m in MODELS}
    # OpenAI folds batch usage into the same "<model>, <direction>" line items: aggregate per project and line.
    openai: dict[tuple[str | None, str, str, str], Decimal] = {}
    rows: list[CostRow] = []
    web_search: dict[str | None, int] = {}
    for usage in usage_rows_for_day(day):
        m = by_model[usage.model_raw]
        for label, token_type, _n, usd in _token_costs(m, usage):
            if m.provider == "openai":
                key = (usage.project_id, m.model, _OPENAI_DIRECTIONS[token_type], token_type)
                openai[key] = openai.get(key, Decimal(0)) + usd
                continue
            batch = " Batch" if usage.batch else ""
            rows.append(
                CostRow(
                    provider="anthropic",
                    bucket_start=start,
                    bucket_width="1d",
                    amount=usd,
                    workspace_id=usage.workspace_id,
                    line_item=f"{m.display}{batch} Usage - {label}",
                    model=m.model,
                    cost_type="tokens",
                    token_type=token_type,
                    service_tier=usage.service_tier,
                    extra_dimensions={
                        "context_window": usage.context_window,
                        "inference_geo": "not_available",
                    },
                )
            )
        if usage.web_searches:
            web_search[usage.workspace_id] = web_search.get(usage.workspace_id, 0) + usage.web_searches
    for workspace_id, searches in sorted(web_search.items(), key=lambda kv: kv[0] or ""):
        rows.append(
            CostRow(
                provider="anthropic",
                bucket_start=start,
                bucket_width="1d",
                amount=searches * _WEB_SEARCH_PRICE,
                workspace_id=workspace_id,
                line_item="Web Search Usage",
                cost_type="web_search",
                extra_dimensions={"context_window": None, "inference_geo": None},
            )
        )
    for (project_id, model, direction, token_type), usd in sorted(openai.items(), key=lambda kv: str(kv[0])):
        rows.append(
            CostRow(
                provider="openai",
                bucket_start=start,
                bucket_width="1d",
                amount=usd,
                project_id=project_id,
                line_item=f"{model}, {direction}",
                model=model,
                cost_type="tokens",
                token_type=token_type,
                extra_dimensions={"api_key_id": None},
            )
        )
    return rows


@register
class SandboxClient(ProviderClient):
    key = "sandbox"
    label = "Sandbox (demo data)"

    def validate_credentials(self) -> None:
        """Any credential works: the sandbox makes no requests."""

    def fetch_usage(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        return self._pages(window, cursor, usage_rows_for_day, "usage")

    def fetch_costs(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        return self._pages(window, cursor, cost_rows_for_day, "costs")

    @staticmethod
    def _pages(
        window: Window, cursor: str | None, make: Callable[[date], list], endpoint: str
    ) -> Iterator[Page]:
        days = window.days()
        start = 0
        if cursor is not None:
            try:
                start = days.index(date.fromisoformat(cursor))
            except ValueError:
                raise ValueError("invalid sandbox cursor (expected a YYYY-MM-DD inside the window)") from None

        def generate() -> Iterator[Page]:
            for number, index in enumerate(range(start, len(days)), start=1):
                day = days[index]
                following = (day + DAY).isoformat() if index + 1 < len(days) else None
                yield Page(make(day), following, number, endpoint, (utc_midnight(day),))

        return generate()
