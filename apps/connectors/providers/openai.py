"""OpenAI Administration API: Usage (one endpoint per product) and Costs.

Auth: `Authorization: Bearer <admin key>`. Paths under `/v1/organization/`. Daily buckets, midnight-aligned windows.

Cursors:
* usage: `"<endpoint>:<next_page token>"`; an empty token means "the first page of that endpoint". The usage
  endpoints are read one after another in `USAGE_ENDPOINTS` order, so the last page of one endpoint carries the
  cursor `"<next endpoint>:"` and the very last page carries None.
* costs: the raw `next_page` token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .base import CostRow, Page, ProviderClient, UsageRow, Window
from .parsing import (
    FieldError,
    as_list,
    as_object,
    opt_bool,
    opt_int,
    opt_str,
    paginate,
    req_int,
    to_decimal,
    unix_to_utc,
)
from .registry import register

PROVIDER = "openai"


@dataclass(frozen=True)
class _Endpoint:
    name: str
    group_by: tuple[str, ...]
    parse: Callable[
        [Mapping[str, Any], str], dict[str, Any]
    ]  # result → UsageRow kwargs (counts, units, extras)


def _dims(result: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "model_raw": opt_str(result, "model", where) or "",
        "project_id": opt_str(result, "project_id", where),
        "api_key_id": opt_str(result, "api_key_id", where),
        "user_id": opt_str(result, "user_id", where),
    }


def _completions(r: Mapping[str, Any], where: str) -> dict[str, Any]:
    uncached_audio = opt_int(r, "input_audio_tokens", where)
    cached_audio = opt_int(r, "input_cached_audio_tokens", where)
    units = {
        key: opt_int(r, key, where)
        for key in (
            "input_cached_audio_tokens",
            "input_image_tokens",
            "input_cached_image_tokens",
            "output_image_tokens",
        )
    }
    return {
        **_dims(r, where),
        "service_tier": opt_str(r, "service_tier", where),
        "batch": bool(opt_bool(r, "batch", where)),
        "requests": req_int(r, "num_model_requests", where),
        # OpenAI's input_tokens already includes cached and cache-write tokens: the total-input convention.
        "input_tokens": req_int(r, "input_tokens", where),
        "cache_read_tokens": opt_int(r, "input_cached_tokens", where),
        "cache_write_tokens": opt_int(r, "input_cache_write_tokens", where),
        "output_tokens": req_int(r, "output_tokens", where),
        "input_audio_tokens": uncached_audio + cached_audio,
        "output_audio_tokens": opt_int(r, "output_audio_tokens", where),
        "units": {k: v for k, v in units.items() if v},
    }


def _tokens_only(r: Mapping[str, Any], where: str) -> dict[str, Any]:  # embeddings, moderations
    return {
        **_dims(r, where),
        "requests": req_int(r, "num_model_requests", where),
        "input_tokens": req_int(r, "input_tokens", where),
    }


def _images(r: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        **_dims(r, where),
        "requests": req_int(r, "num_model_requests", where),
        "units": {"images": req_int(r, "images", where)},
        "extra_dimensions": {"size": opt_str(r, "size", where), "source": opt_str(r, "source", where)},
    }


def _unit_counter(field: str, unit: str, *, with_requests: bool) -> Callable[[Mapping[str, Any], str], dict]:
    def parse(r: Mapping[str, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {**_dims(r, where), "units": {unit: req_int(r, field, where)}}
        if with_requests:
            out["requests"] = req_int(r, "num_model_requests", where)
        return out

    return parse


_KEY_MODEL = ("project_id", "api_key_id", "model")
USAGE_ENDPOINTS: tuple[_Endpoint, ...] = (
    _Endpoint("completions", ("project_id", "api_key_id", "model", "batch", "service_tier"), _completions),
    _Endpoint("embeddings", _KEY_MODEL, _tokens_only),
    _Endpoint("moderations", _KEY_MODEL, _tokens_only),
    _Endpoint("images", (*_KEY_MODEL, "size", "source"), _images),
    _Endpoint("audio_speeches", _KEY_MODEL, _unit_counter("characters", "characters", with_requests=True)),
    _Endpoint("audio_transcriptions", _KEY_MODEL, _unit_counter("seconds", "seconds", with_requests=True)),
    _Endpoint(
        "vector_stores", ("project_id",), _unit_counter("usage_bytes", "usage_bytes", with_requests=False)
    ),
    _Endpoint(
        "code_interpreter_sessions",
        ("project_id",),
        _unit_counter("num_sessions", "sessions", with_requests=False),
    ),
)
_ENDPOINTS_BY_NAME = {e.name: e for e in USAGE_ENDPOINTS}

# line_item direction → Anthropic-style token_type vocabulary
_DIRECTIONS = {
    "input": "uncached_input_tokens",
    "cached input": "cache_read_input_tokens",
    "output": "output_tokens",
}
_MODALITY_WORDS = (" audio", " image", " text")


def parse_line_item(line_item: str | None) -> tuple[str | None, str | None]:
    """Best-effort (model, direction) from a Costs `line_item` label; (None, None) for non-model lines.

    "evals | gpt-4o-mini-2024-07-18, cached input" → ("gpt-4o-mini-2024-07-18", "cached input");
    "gpt-audio-mini-2025-12-15 audio, input" → ("gpt-audio-mini-2025-12-15", "input");
    "web search tool calls" → (None, None).
    """
    if not line_item:
        return None, None
    text = line_item.split(" | ", 1)[1] if " | " in line_item else line_item
    if ", " not in text:
        return None, None
    model, direction = text.rsplit(", ", 1)
    model = model.strip()
    for word in _MODALITY_WORDS:
        if model.endswith(word):
            model = model[: -len(word)].rstrip()
            break
    return (model or None), direction.strip() or None


def _unix_bounds(window: Window) -> tuple[str, str]:
    return str(int(window.start.timestamp())), str(int(window.end.timestamp()))


@register
class OpenAIClient(ProviderClient):
    key = "openai"
    label = "OpenAI"
    default_base_url = "https://api.openai.com"
    base_url_suffix = "/v1"
    bucket_width = "1d"
    usage_page_limit = 31  # buckets per page (max for 1d)
    cost_page_limit = 31
    # Which usage endpoints to read, in order (names from USAGE_ENDPOINTS); override per instance to narrow.
    usage_endpoints: tuple[str, ...] = tuple(e.name for e in USAGE_ENDPOINTS)

    # ---- credentials -------------------------------------------------------------------------------------------

    def validate_credentials(self) -> None:
        """One-bucket Costs call for yesterday: a non-admin or revoked key gets 401/403 → ProviderAuthError."""
        today = int(time.time()) // 86400 * 86400
        params = [
            ("start_time", str(today - 86400)),
            ("end_time", str(today)),
            ("bucket_width", "1d"),
            ("limit", "1"),
        ]
        self.http.get_json("/v1/organization/costs", params, page_number=1)

    # ---- usage ---------------------------------------------------------------------------------------------------

    def _parse_cursor(self, cursor: str | None) -> tuple[int, str | None]:
        names = list(self.usage_endpoints)
        if cursor is None:
            return 0, None
        name, sep, token = cursor.partition(":")
        if not sep or name not in names:
            raise ValueError("invalid OpenAI usage cursor")
        return names.index(name), (token or None)

    def fetch_usage(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        window.require_day_aligned()
        index, token = self._parse_cursor(cursor)  # a bad cursor fails here, before any request
        return self._iter_usage(window, index, token)

    def _iter_usage(self, window: Window, index: int, token: str | None) -> Iterator[Page]:
        names = list(self.usage_endpoints)
        number = 1
        for i in range(index, len(names)):
            endpoint = _ENDPOINTS_BY_NAME[names[i]]
            following = f"{names[i + 1]}:" if i + 1 < len(names) else None

            def cursor_for(
                next_token: str | None, _name: str = endpoint.name, _following=following
            ) -> str | None:
                return f"{_name}:{next_token}" if next_token else _following

            last = yield from paginate(
                endpoint=endpoint.name,
                get_page=self._page_getter(
                    f"/v1/organization/usage/{endpoint.name}", window, endpoint.group_by
                ),
                parse_data=lambda data, _e=endpoint: self._parse_usage_buckets(_e, data),
                token=token if i == index else None,
                first_number=number,
                cursor_for=cursor_for,
            )
            number = last + 1

    def _page_getter(
        self,
        path: str,
        window: Window,
        group_by: tuple[str, ...],
        *,
        limit: int | None = None,
        bucket_width: str | None = None,
    ):
        start, end = _unix_bounds(window)
        width = bucket_width or self.bucket_width

        def get(token: str | None, number: int) -> Any:
            params = [("start_time", start), ("end_time", end), ("bucket_width", width)]
            params += [("group_by", g) for g in group_by]
            params.append(("limit", str(limit or self.usage_page_limit)))
            if token:
                params.append(("page", token))
            return self.http.get_json(path, params, page_number=number)

        return get

    def _buckets(self, data: list) -> Iterator[tuple[int, datetime, list]]:
        for i, raw in enumerate(data):
            bucket = as_object(raw, f"data[{i}]")
            start = unix_to_utc(req_int(bucket, "start_time", f"data[{i}]"))
            if "results" not in bucket:  # the Dec-2024 spec spelled it `result`; accept that too
                if "result" not in bucket:
                    raise FieldError(f"data[{i}]: missing required field 'results'")
                results = as_list(bucket["result"], f"data[{i}].result")
            else:
                results = as_list(bucket["results"], f"data[{i}].results")
            yield i, start, results

    def _parse_usage_buckets(self, endpoint: _Endpoint, data: list) -> tuple[list, tuple[datetime, ...]]:
        rows: list[UsageRow] = []
        starts: list[datetime] = []
        for i, start, results in self._buckets(data):
            starts.append(start)
            for j, raw in enumerate(results):
                where = f"data[{i}].results[{j}]"
                fields = endpoint.parse(as_object(raw, where), where)
                rows.append(
                    UsageRow(
                        provider=PROVIDER,
                        endpoint=endpoint.name,
                        bucket_start=start,
                        bucket_width=self.bucket_width,
                        **fields,
                    )
                )
        return rows, tuple(starts)

    # ---- costs ---------------------------------------------------------------------------------------------------

    def fetch_costs(self, window: Window, cursor: str | None = None) -> Iterator[Page]:
        window.require_day_aligned()
        return paginate(
            endpoint="costs",
            get_page=self._page_getter(
                "/v1/organization/costs",
                window,
                ("project_id", "line_item"),
                limit=self.cost_page_limit,
                bucket_width="1d",  # the Costs API only has daily buckets, whatever the usage width
            ),
            parse_data=self._parse_cost_buckets,
            token=cursor or None,
            first_number=1,
            cursor_for=lambda token: token,
        )

    def _parse_cost_buckets(self, data: list) -> tuple[list, tuple[datetime, ...]]:
        rows: list[CostRow] = []
        starts: list[datetime] = []
        for i, start, results in self._buckets(data):
            starts.append(start)
            for j, raw in enumerate(results):
                where = f"data[{i}].results[{j}]"
                r = as_object(raw, where)
                if r.get("amount") is None:
                    raise FieldError(f"{where}: missing required field 'amount'")
                amount = as_object(r["amount"], f"{where}.amount")
                if amount.get("value") is None:
                    raise FieldError(f"{where}.amount: missing required field 'value'")
                currency = opt_str(amount, "currency", f"{where}.amount") or "usd"
                line_item = opt_str(r, "line_item", where)
                model, direction = parse_line_item(line_item)
                token_type = _DIRECTIONS.get(direction or "") if model else None
                quantity = r.get("quantity")
                rows.append(
                    CostRow(
                        provider=PROVIDER,
                        bucket_start=start,
                        bucket_width="1d",
                        amount=to_decimal(amount["value"], f"{where}.amount.value"),
                        currency=currency.upper(),
                        project_id=opt_str(r, "project_id", where),
                        line_item=line_item,
                        model=model,
                        cost_type="tokens" if token_type else None,
                        token_type=token_type,
                        quantity=None if quantity is None else to_decimal(quantity, f"{where}.quantity"),
                        quantity_unit=opt_str(r, "quantity_unit", where),
                        extra_dimensions={"api_key_id": opt_str(r, "api_key_id", where)},
                    )
                )
        return rows, tuple(starts)
