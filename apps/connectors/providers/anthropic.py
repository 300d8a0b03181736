"""Anthropic Admin API: usage_report/messages and cost_report.

Auth: `x-api-key: <admin key sk-ant-admin…>` + `anthropic-version: 2023-06-01`. Array params as `group_by[]=…`.
Daily buckets, midnight-aligned windows.

Conversions into the UsageRow/CostRow conventions:
* input_tokens = uncached + cache_read + cache_creation 5m + cache_creation 1h (Anthropic reports them apart);
  cache_write_tokens = 5m + 1h; cache_write_1h_tokens = 1h.
* cost `amount` is a decimal string in CENTS: USD = Decimal(amount) / 100, exact.

Cursors: the raw `next_page` token, for usage and costs alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .base import CostRow, Page, ProviderClient, UsageRow, Window
from .parsing import (
    FieldError,
    as_list,
    as_object,
    opt_int,
    opt_str,
    paginate,
    req_int,
    req_str,
    rfc3339_to_utc,
    to_decimal,
)
from .registry import register

PROVIDER = "anthropic"
API_VERSION = "2023-06-01"
USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
USAGE_GROUP_BY = ("api_key_id", "workspace_id", "model", "service_tier", "context_window")
COST_GROUP_BY = ("workspace_id", "description")
# Row dimensions we do not group by but keep in dimensions_key (null unless grouped).
_USAGE_EXTRA_DIMENSIONS = ("inference_geo", "account_id", "service_account_id")
_COST_EXTRA_DIMENSIONS = ("context_window", "inference_geo")


def cents_to_units(cents: Decimal) -> Decimal:
    """Exact division by 100 (moves the decimal point; no context rounding however many digits)."""
    sign, digits, exponent = cents.as_tuple()
    return Decimal((sign, digits, exponent - 2))


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@register
class AnthropicClient(ProviderClient):
    key = "anthropic"
    label = "Anthropic"
    default_base_url = "https://api.anthropic.com"
    base_url_suffix = "/v1"
    bucket_width = "1d"
    usage_page_limit = 31
    cost_page_limit = 31

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key, "anthropic-version": API_VERSION}

    def validate_credentials(self) -> None:
        """One-bucket usage report for yesterday: a non-admin or revoked key gets 401/403 → ProviderAuthError."""
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        params = [
            ("starting_at", _rfc3339(today - timedelta(days=1))),
            ("ending_at", _rfc3339(today)),
            ("bucket_width", "1d"),
            ("limit", "1"),
        ]
        self.http.get_json(USAGE_PATH, params, page_number=1)

    def _page_getter(self, path: str, window: Window, group_by: tuple[str, ...], limit: int):
        def get(token: str | None, number: int) -> Any:
            params = [
                ("starting_at", _rfc3339(window.start)),
                ("ending_at", _rfc3339(window.end)),
                ("bucket_width", self.bucket_width),
            ]
            params += [("group_by[]", g) for g in group_by]
            params.append(("limit", str(limit)))
            if token:
                params.append(("page", token))
            return self.http.get_json(path, params, page_number=number)

        return get

    @staticmethod
    def _buckets(data: list) -> Iterator[tuple[int, datetime, list]]:
        for i, raw in enumerate(data):
            bucket = as_object(raw, f"data[{i}]")
            start = rfc3339_to_utc(req_str(bucket, "starting_at", f"data[{i}]"), f"data[{i}].starting_at")
            if "results" not in bucket:
                raise FieldError(f"data[{i}]: missing required field 'results'")
            yield i, start, as_list(bucket["results"], f"data[{i}].results")

    # ---- usage ---------------------------------------------------------------------------------------------------

    def fetch_usage(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        window.require_day_aligned()
        return paginate(
            endpoint="messages",
            get_page=self._page_getter(USAGE_PATH, window, USAGE_GROUP_BY, self.usage_page_limit),
            parse_data=self._parse_usage,
            token=cursor or None,
            first_number=1,
            cursor_for=lambda token: token,
        )

    def _parse_usage(self, data: list) -> tuple[list, tuple[datetime, ...]]:
        rows: list[UsageRow] = []
        starts: list[datetime] = []
        for i, start, results in self._buckets(data):
            starts.append(start)
            for j, raw in enumerate(results):
                where = f"data[{i}].results[{j}]"
                r = as_object(raw, where)
                if r.get("cache_creation") is None:
                    raise FieldError(f"{where}: missing required field 'cache_creation'")
                cache_creation = as_object(r["cache_creation"], f"{where}.cache_creation")
                write_5m = opt_int(cache_creation, "ephemeral_5m_input_tokens", f"{where}.cache_creation")
                write_1h = opt_int(cache_creation, "ephemeral_1h_input_tokens", f"{where}.cache_creation")
                uncached = req_int(r, "uncached_input_tokens", where)
                cache_read = req_int(r, "cache_read_input_tokens", where)
                tools = r.get("server_tool_use")
                web_searches = (
                    opt_int(as_object(tools, f"{where}.server_tool_use"), "web_search_requests", where)
                    if tools is not None
                    else 0
                )
                service_tier = opt_str(r, "service_tier", where)
                rows.append(
                    UsageRow(
                        provider=PROVIDER,
                        endpoint="messages",
                        bucket_start=start,
                        bucket_width=self.bucket_width,
                        model_raw=opt_str(r, "model", where) or "",
                        workspace_id=opt_str(r, "workspace_id", where),
                        api_key_id=opt_str(r, "api_key_id", where),
                        service_tier=service_tier,
                        batch=service_tier == "batch",
                        context_window=opt_str(r, "context_window", where),
                        requests=0,  # the usage report has no request count
                        input_tokens=uncached + cache_read + write_5m + write_1h,
                        cache_read_tokens=cache_read,
                        cache_write_tokens=write_5m + write_1h,
                        cache_write_1h_tokens=write_1h,
                        output_tokens=req_int(r, "output_tokens", where),
                        web_searches=web_searches,
                        extra_dimensions={k: opt_str(r, k, where) for k in _USAGE_EXTRA_DIMENSIONS},
                    )
                )
        return rows, tuple(starts)

    # ---- costs ---------------------------------------------------------------------------------------------------

    def fetch_costs(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        window.require_day_aligned()
        return paginate(
            endpoint="cost_report",
            get_page=self._page_getter(COST_PATH, window, COST_GROUP_BY, self.cost_page_limit),
            parse_data=self._parse_costs,
            token=cursor or None,
            first_number=1,
            cursor_for=lambda token: token,
        )

    def _parse_costs(self, data: list) -> tuple[list, tuple[datetime, ...]]:
        rows: list[CostRow] = []
        starts: list[datetime] = []
        for i, start, results in self._buckets(data):
            starts.append(start)
            for j, raw in enumerate(results):
                where = f"data[{i}].results[{j}]"
                r = as_object(raw, where)
                if r.get("amount") is None:
                    raise FieldError(f"{where}: missing required field 'amount'")
                cents = to_decimal(r["amount"], f"{where}.amount")
                rows.append(
                    CostRow(
                        provider=PROVIDER,
                        bucket_start=start,
                        bucket_width="1d",
                        amount=cents_to_units(cents),
                        currency=(opt_str(r, "currency", where) or "USD").upper(),
                        workspace_id=opt_str(r, "workspace_id", where),
                        line_item=opt_str(r, "description", where),
                        model=opt_str(r, "model", where),
                        cost_type=opt_str(r, "cost_type", where),
                        token_type=opt_str(r, "token_type", where),
                        service_tier=opt_str(r, "service_tier", where),
                        extra_dimensions={k: opt_str(r, k, where) for k in _COST_EXTRA_DIMENSIONS},
                    )
                )
        return rows, tuple(starts)
