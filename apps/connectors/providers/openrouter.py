"""OpenRouter: GET /api/v1/activity?date=YYYY-MM-DD, one request per UTC day of the window.

Auth: `Authorization: Bearer <management key>`. The activity endpoint is not paginated and only covers the last 30
completed UTC days (today is never included). Rows are (date, model, provider endpoint); cost comes with the usage
(`usage`, USD of OpenRouter credits) and is stored as UsageRow.reported_cost. BYOK upstream cost
(`byok_usage_inference`) is different money and goes to units["byok_usage_inference_usd"], never added to it.

There is no separate cost endpoint: fetch_costs returns an empty iterator.

Cursor: the ISO date (`YYYY-MM-DD`) of the next day to read; each day is one Page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from .base import DAY, MalformedPage, Page, ProviderAuthError, ProviderClient, UsageRow, Window, utc_midnight
from .parsing import (
    FieldError,
    as_list,
    as_object,
    opt_int,
    opt_str,
    req_decimal,
    req_int,
    req_str,
    to_decimal,
)
from .registry import register

PROVIDER = "openrouter"
ACTIVITY_PATH = "/api/v1/activity"
KEY_PATH = "/api/v1/key"
_EXTRA_DIMENSIONS = ("endpoint_id", "provider_name", "model_permaslug")


@register
class OpenRouterClient(ProviderClient):
    key = "openrouter"
    label = "OpenRouter"
    default_base_url = "https://openrouter.ai"
    base_url_suffix = "/api/v1"

    def validate_credentials(self) -> None:
        """GET /api/v1/key works with any key; the activity endpoint needs a management key, so require one."""
        payload = self.http.get_json(KEY_PATH, page_number=1)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise MalformedPage(1, "key: missing required field 'data'")
        if not (data.get("is_management_key") is True or data.get("is_provisioning_key") is True):
            raise ProviderAuthError(
                "OpenRouter: this key is not a management key; usage reports need a management key",
                status=None,
            )

    def fetch_usage(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        window.require_day_aligned()
        days = window.days()
        start = 0
        if cursor is not None:
            try:
                resume = date.fromisoformat(cursor)
            except ValueError:
                raise ValueError("invalid OpenRouter cursor (expected YYYY-MM-DD)") from None
            if resume not in days:
                raise ValueError("OpenRouter cursor is outside the window")
            start = days.index(resume)
        return self._iter_days(days, start)

    def _iter_days(self, days: list[date], start: int) -> Iterator[Page]:
        for number, index in enumerate(range(start, len(days)), start=1):
            day = days[index]
            payload = self.http.get_json(ACTIVITY_PATH, [("date", day.isoformat())], page_number=number)
            try:
                rows = self._parse(payload, day)
            except FieldError as exc:
                raise MalformedPage(number, f"activity {day.isoformat()}: {exc}") from None
            following = (day + DAY).isoformat() if index + 1 < len(days) else None
            yield Page(
                rows=rows,
                next_cursor=following,
                number=number,
                endpoint="activity",
                bucket_starts=(utc_midnight(day),),
            )

    @staticmethod
    def _parse(payload: Any, day: date) -> list[UsageRow]:
        body = as_object(payload, "response")
        if "data" not in body:
            raise FieldError("response: missing required field 'data'")
        rows = []
        for i, raw in enumerate(as_list(body["data"], "response.data")):
            where = f"data[{i}]"
            item = as_object(raw, where)
            item_day = req_str(item, "date", where)
            try:
                parsed_day = date.fromisoformat(item_day[:10])
            except ValueError:
                raise FieldError(f"{where}.date is not YYYY-MM-DD") from None
            if parsed_day != day:
                # Defensive: an API that ignored ?date= would return 30 days; keep only the day asked for so a
                # per-day sync never counts another day twice.
                continue
            byok = item.get("byok_usage_inference")
            rows.append(
                UsageRow(
                    provider=PROVIDER,
                    endpoint="activity",
                    bucket_start=utc_midnight(parsed_day),
                    bucket_width="1d",
                    model_raw=req_str(item, "model", where),
                    workspace_id=opt_str(item, "workspace_id", where),
                    requests=req_int(item, "requests", where),
                    input_tokens=req_int(item, "prompt_tokens", where),
                    output_tokens=req_int(item, "completion_tokens", where),  # includes reasoning
                    reasoning_tokens=opt_int(item, "reasoning_tokens", where),
                    reported_cost=req_decimal(item, "usage", where),
                    units={
                        "byok_usage_inference_usd": to_decimal(0 if byok is None else byok, f"{where}.byok")
                    },
                    extra_dimensions={k: opt_str(item, k, where) for k in _EXTRA_DIMENSIONS},
                )
            )
        return rows

    def fetch_costs(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        """OpenRouter has no separate cost report: cost arrives as UsageRow.reported_cost. Always empty."""
        return iter(())
