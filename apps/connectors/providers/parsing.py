"""Strict-but-tolerant field readers and the bucketed-report pagination loop shared by OpenAI and Anthropic.

Readers raise FieldError for a missing required field or a wrong type; the page loop turns it into
MalformedPage(page_number, reason). Unknown keys are ignored everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .base import MalformedPage, Page


class FieldError(ValueError):
    """A required field is missing or has the wrong type."""


def as_object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(f"{where} is not an object")
    return value


def as_list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise FieldError(f"{where} is not a list")
    return value


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise FieldError(f"{where} must be an integer, got a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        result = int(value)  # 30.0 style counts
    else:
        raise FieldError(f"{where} must be an integer, got {type(value).__name__}")
    if result < 0:
        raise FieldError(f"{where} must not be negative")
    return result


def req_int(obj: Mapping[str, Any], key: str, where: str) -> int:
    if obj.get(key) is None:
        raise FieldError(f"{where}: missing required field {key!r}")
    return _to_int(obj[key], f"{where}.{key}")


def opt_int(obj: Mapping[str, Any], key: str, where: str, default: int = 0) -> int:
    """Counters added to a schema later are absent from older responses: missing or null means `default`."""
    value = obj.get(key)
    return default if value is None else _to_int(value, f"{where}.{key}")


def req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise FieldError(
            f"{where}: missing required field {key!r}" if value is None else f"{where}.{key} must be a string"
        )
    return value


def opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(f"{where}.{key} must be a string or null, got {type(value).__name__}")
    return value


def opt_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise FieldError(f"{where}.{key} must be a boolean or null")


def to_decimal(value: Any, where: str) -> Decimal:
    """An exact Decimal from a JSON number (already Decimal/int via parse_float=Decimal) or a numeric string."""
    if isinstance(value, bool) or value is None:
        raise FieldError(f"{where} must be a number or numeric string")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise FieldError(f"{where} is not a number") from None
    else:
        raise FieldError(f"{where} must be a number or numeric string, got {type(value).__name__}")
    if not result.is_finite():
        raise FieldError(f"{where} is not a finite number")
    return Decimal(0) if result.is_zero() else result  # "0E-6176" → 0


def req_decimal(obj: Mapping[str, Any], key: str, where: str) -> Decimal:
    if obj.get(key) is None:
        raise FieldError(f"{where}: missing required field {key!r}")
    return to_decimal(obj[key], f"{where}.{key}")


def unix_to_utc(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def rfc3339_to_utc(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise FieldError(f"{where} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise FieldError(f"{where} has no time zone")
    return parsed.astimezone(UTC)


def read_envelope(payload: Any) -> tuple[list, bool, str | None]:
    """{data: [...], has_more: bool, next_page: str|null} (OpenAI and Anthropic report pages)."""
    page = as_object(payload, "response")
    if "data" not in page:
        raise FieldError("response: missing required field 'data'")
    data = as_list(page["data"], "response.data")
    has_more = page.get("has_more")
    if not isinstance(has_more, bool):
        raise FieldError(
            "response.has_more must be a boolean" if "has_more" in page else "response: missing 'has_more'"
        )
    next_page = page.get("next_page")
    if next_page is not None and not isinstance(next_page, str):
        raise FieldError("response.next_page must be a string or null")
    if has_more and not next_page:
        raise FieldError("has_more is true but next_page is missing")
    return data, has_more, (next_page if has_more else None)


def paginate(
    *,
    endpoint: str,
    get_page: Callable[[str | None, int], Any],
    parse_data: Callable[[list], tuple[list, tuple[datetime, ...]]],
    token: str | None,
    first_number: int,
    cursor_for: Callable[[str | None], str | None],
) -> Iterator[Page]:
    """Follow next_page until has_more is false, yielding one Page per response.

    `get_page(token, number)` fetches and decodes one response; `parse_data(data)` turns the bucket list into rows and
    bucket starts; `cursor_for(next_token)` turns the provider's next_page (None on the last page) into the cursor
    the caller stores. Returns the number of the last page yielded (via StopIteration.value, for `yield from`).
    """
    number = first_number
    seen: set[str] = set()
    while True:
        payload = get_page(token, number)
        try:
            data, has_more, next_page = read_envelope(payload)
            rows, starts = parse_data(data)
        except FieldError as exc:
            raise MalformedPage(number, f"{endpoint}: {exc}") from None
        if next_page is not None and (next_page == token or next_page in seen):
            raise MalformedPage(number, f"{endpoint}: next_page repeats a cursor already read")
        yield Page(
            rows=rows,
            next_cursor=cursor_for(next_page),
            number=number,
            endpoint=endpoint,
            bucket_starts=starts,
        )
        if next_page is None:
            return number
        if token:
            seen.add(token)
        token = next_page
        number += 1
