"""Validation of pushed call events: one fast pass per event (no serializer per event), errors per field."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from apps.usage.models import SERVICE_TIERS, TAG_COLUMNS

MAX_BATCH = 5000
MAX_TOKENS = 10**12
MAX_COST = Decimal("1000000000")
FUTURE_TOLERANCE = timedelta(hours=1)
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

TOKEN_KEYS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "cache_write_1h_tokens",
)
REQUIRED_TOKENS = ("input_tokens", "output_tokens")
KNOWN = {
    "id",
    "timestamp",
    "provider",
    "model",
    "cost",
    "currency",
    "team",
    "tags",
    "service_tier",
    "batch",
    "requests",
    *TOKEN_KEYS,
}


def _int(value, name, errors, *, required=False, default=0, maximum=MAX_TOKENS):
    if value is None:
        if required:
            errors[name] = ["This field is required."]
        return default
    if type(value) is not int:  # bool, float and "12" are all refused: counts are whole numbers
        errors[name] = ["Must be a whole number."]
        return default
    if value < 0:
        errors[name] = ["Must not be negative."]
        return default
    if value > maximum:
        errors[name] = [f"Must be at most {maximum}."]
        return default
    return value


def _text(value, name, errors, *, max_length, required=True, pattern=None, message=None):
    if value is None or value == "":
        if required:
            errors[name] = ["This field is required."]
        return None
    if not isinstance(value, str):
        errors[name] = ["Must be a string."]
        return None
    if len(value) > max_length:
        errors[name] = [f"Must be at most {max_length} characters."]
        return None
    if pattern is not None and not pattern.match(value):
        errors[name] = [message or "Has characters that are not allowed."]
        return None
    if CONTROL_RE.search(value):
        errors[name] = ["Must not contain control characters."]
        return None
    return value


def _timestamp(value, errors, now):
    if not isinstance(value, str):
        errors["timestamp"] = [
            "This field is required, as an ISO 8601 time with an offset (2026-11-20T14:03:00Z)."
        ]
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        errors["timestamp"] = ["Not an ISO 8601 time, e.g. 2026-11-20T14:03:00Z."]
        return None
    if ts.tzinfo is None:
        errors["timestamp"] = ["Give a time zone offset (e.g. Z for UTC)."]
        return None
    if ts > now + FUTURE_TOLERANCE:
        errors["timestamp"] = ["Is in the future."]
        return None
    if ts < EARLIEST:
        errors["timestamp"] = ["Is before 2020."]
        return None
    return ts.astimezone(UTC)


def _cost(value, errors):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        errors["cost"] = ['Must be a decimal number, preferably as a string ("0.0123").']
        return None
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        errors["cost"] = ['Must be a decimal number, preferably as a string ("0.0123").']
        return None
    if not cost.is_finite() or cost < 0 or cost > MAX_COST:
        errors["cost"] = ["Must be a number from 0 to 1,000,000,000."]
        return None
    return cost.quantize(Decimal("1e-10"))


def _tags(value, errors):
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["tags"] = ["Must be an object of key/value pairs."]
        return {}
    if len(value) > 50:
        errors["tags"] = ["At most 50 tags."]
        return {}
    clean = {}
    for key, item in value.items():
        if not TAG_KEY_RE.match(key):
            errors["tags"] = [f"Tag key {key[:70]!r} must be 1-64 letters, digits, '_', '.' or '-'."]
            return {}
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            errors["tags"] = [f"Tag {key!r} must be a string or a number."]
            return {}
        text = str(item)
        if len(text) > 128 or CONTROL_RE.search(text):
            errors["tags"] = [f"Tag {key!r} must be at most 128 printable characters."]
            return {}
        clean[key] = text
    return clean


def validate_event(raw, *, now: datetime) -> tuple[dict | None, dict]:
    """Returns (clean event, {}) or (None, {field: [messages]}).

    The clean event is flat and named as the ledger's columns (key, start_time in UTC, provider, model_raw, the
    token classes with uncached_input_tokens, requests, reported_cost, the named tags, tags, service_tier) plus
    "team" as sent (a name or an id, or None): the ingest completes it into the ledger row in place.
    """
    clean = _accept_fast(raw, now)
    if clean is not None:
        return clean, {}
    return _validate_full(raw, now=now)


# Strings that passed the provider / model / tag key / tag value checks before: the checks are pure functions of
# the string, so a repeat skips the regular expressions. Bounded; cleared when full.
_SEEN_MAX = 10_000
_ok_providers: set[str] = set()
_ok_models: set[str] = set()
_ok_tag_keys: set[str] = set()
_ok_tag_values: set[str] = set()
_TIERS = frozenset(SERVICE_TIERS)


def _remember(seen: set, value: str) -> None:
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen.add(value)


def _accept_fast(raw, now: datetime) -> dict | None:
    """The common, valid event checked in one inlined pass: its clean form, exactly as `_validate_full` builds it.

    Returns None as soon as anything is unusual (a wrong type, a missing or out-of-range value, a subclass of a
    builtin, ...); `_validate_full` then decides and words the errors. So this only ever accepts what
    `_validate_full` accepts, and returns the same clean event for it.
    """
    if type(raw) is not dict or not raw.keys() <= KNOWN:
        return None
    event_id = raw.get("id")
    # isprintable() is False for every control character (and for some other characters, which the full check then
    # decides): cheaper than the regular expression, and never accepts what it refuses
    if type(event_id) is not str or not event_id or len(event_id) > 200 or not event_id.isprintable():
        return None
    value = raw.get("timestamp")
    if type(value) is not str:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    if ts.tzinfo is None or ts > now + FUTURE_TOLERANCE or ts < EARLIEST:
        return None
    provider = raw.get("provider")
    if type(provider) is not str:
        return None
    if provider not in _ok_providers:
        if (
            not provider
            or len(provider) > 64
            or not PROVIDER_RE.match(provider)
            or CONTROL_RE.search(provider)
        ):
            return None
        _remember(_ok_providers, provider)
    model = raw.get("model")
    if type(model) is not str:
        return None
    if model not in _ok_models:
        if not model or len(model) > 200 or not MODEL_RE.match(model) or CONTROL_RE.search(model):
            return None
        _remember(_ok_models, model)
    get = raw.get
    input_tokens, output_tokens = get("input_tokens"), get("output_tokens")
    if (
        type(input_tokens) is not int
        or type(output_tokens) is not int
        or not 0 <= input_tokens <= MAX_TOKENS
        or not 0 <= output_tokens <= MAX_TOKENS
    ):
        return None
    # the optional counts, unrolled: absent is 0
    cache_read, cache_write, cache_write_1h = (
        get("cache_read_tokens", 0),
        get("cache_write_tokens", 0),
        get("cache_write_1h_tokens", 0),
    )
    reasoning, input_audio, output_audio = (
        get("reasoning_tokens", 0),
        get("input_audio_tokens", 0),
        get("output_audio_tokens", 0),
    )
    if (
        type(cache_read) is not int
        or type(cache_write) is not int
        or type(cache_write_1h) is not int
        or type(reasoning) is not int
        or type(input_audio) is not int
        or type(output_audio) is not int
        or min(cache_read, cache_write, cache_write_1h, reasoning, input_audio, output_audio) < 0
        # every part is bounded by input or output (checked below), so none can exceed MAX_TOKENS either
        or cache_read + cache_write > input_tokens
        or cache_write_1h > cache_write
        or reasoning > output_tokens
        or input_audio > input_tokens
        or output_audio > output_tokens
    ):
        return None
    requests = get("requests")
    if requests is None:
        requests = 1
    elif type(requests) is not int or not 0 <= requests <= 10**9:
        return None
    cost = get("cost")
    if cost is not None:
        cost_errors: dict = {}
        cost = _cost(cost, cost_errors)
        if cost_errors:
            return None
    currency = get("currency", "USD")
    if currency != "USD" and currency != "usd":
        return None
    team = get("team")
    if team is not None and ((type(team) is not str and type(team) is not int) or team == ""):
        return None
    tags = get("tags")
    if not tags:
        if tags is not None and type(tags) is not dict:  # "", 0, [] ...: the full check words the error
            return None
        tags = {}
        feature = task_id = customer = end_user = environment = ""
    else:
        if type(tags) is not dict or len(tags) > 50:
            return None
        clean_tags = {}
        for key, item in tags.items():
            if type(key) is not str:
                return None
            if key not in _ok_tag_keys:
                if not TAG_KEY_RE.match(key):
                    return None
                _remember(_ok_tag_keys, key)
            if type(item) is str:
                text = item
            elif type(item) is int or type(item) is float:
                text = str(item)
            else:
                return None
            if text not in _ok_tag_values:
                if len(text) > 128 or CONTROL_RE.search(text):
                    return None
                _remember(_ok_tag_values, text)
            clean_tags[key] = text
        pop = clean_tags.pop
        feature, task_id, customer = pop("feature", ""), pop("task_id", ""), pop("customer", "")
        end_user, environment = pop("end_user", ""), pop("environment", "")
        tags = clean_tags
    tier = get("service_tier")
    if tier is not None and (type(tier) is not str or tier not in _TIERS):
        return None
    batch = get("batch", False)
    if batch is not True and batch is not False:
        return None
    return {
        "key": event_id,
        "start_time": ts if ts.tzinfo is UTC else ts.astimezone(UTC),
        "provider": provider,
        "model_raw": model,
        "uncached_input_tokens": input_tokens - cache_read - cache_write,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cache_write_1h_tokens": cache_write_1h,
        "output_tokens": output_tokens,
        "reasoning_tokens": reasoning,
        "input_audio_tokens": input_audio,
        "output_audio_tokens": output_audio,
        "requests": requests,
        "reported_cost": cost,
        "team": team,
        "tags": tags,
        "feature": feature,
        "task_id": task_id,
        "customer": customer,
        "end_user": end_user,
        "environment": environment,
        "service_tier": "batch" if batch else (tier or "standard"),
    }


def _validate_full(raw, *, now: datetime) -> tuple[dict | None, dict]:
    """Every check, with an error message per field."""
    if not isinstance(raw, dict):
        return None, {"non_field_errors": ["Each event must be a JSON object."]}
    errors: dict[str, list[str]] = {}
    unknown = set(raw) - KNOWN
    for key in sorted(unknown)[:10]:
        errors[str(key)[:64]] = ["Unknown field."]
    event_id = _text(raw.get("id"), "id", errors, max_length=200)
    ts = _timestamp(raw.get("timestamp"), errors, now)
    provider = _text(
        raw.get("provider"),
        "provider",
        errors,
        max_length=64,
        pattern=PROVIDER_RE,
        message="Use lower-case letters, digits, '.', '_' or '-' (e.g. openai, anthropic, self-hosted).",
    )
    model = _text(
        raw.get("model"),
        "model",
        errors,
        max_length=200,
        pattern=MODEL_RE,
        message="Use letters, digits and . _ : / @ + - only.",
    )
    counts = {k: _int(raw.get(k), k, errors, required=k in REQUIRED_TOKENS) for k in TOKEN_KEYS}
    requests = _int(raw.get("requests"), "requests", errors, default=1, maximum=10**9)
    cost = _cost(raw.get("cost"), errors)
    currency = raw.get("currency", "USD")
    if currency not in ("USD", "usd"):
        errors["currency"] = ["Only USD costs are accepted (providers bill in USD)."]
    team = raw.get("team")
    if team is not None and (isinstance(team, bool) or not isinstance(team, str | int) or team == ""):
        errors["team"] = ["Give the team's name or id."]
    tags = _tags(raw.get("tags"), errors)
    tier = raw.get("service_tier")
    if tier is not None and tier not in SERVICE_TIERS:
        errors["service_tier"] = [f"Use one of: {', '.join(SERVICE_TIERS)}."]
    batch = raw.get("batch", False)
    if not isinstance(batch, bool):
        errors["batch"] = ["Must be true or false."]
    if not errors:
        if counts["cache_read_tokens"] + counts["cache_write_tokens"] > counts["input_tokens"]:
            errors["cache_read_tokens"] = [
                "input_tokens counts all input, so cache_read_tokens + cache_write_tokens cannot exceed it."
            ]
        if counts["cache_write_1h_tokens"] > counts["cache_write_tokens"]:
            errors["cache_write_1h_tokens"] = ["Cannot exceed cache_write_tokens."]
        if counts["reasoning_tokens"] > counts["output_tokens"]:
            errors["reasoning_tokens"] = [
                "output_tokens includes reasoning, so reasoning_tokens cannot exceed it."
            ]
        if counts["input_audio_tokens"] > counts["input_tokens"]:
            errors["input_audio_tokens"] = ["Cannot exceed input_tokens."]
        if counts["output_audio_tokens"] > counts["output_tokens"]:
            errors["output_audio_tokens"] = ["Cannot exceed output_tokens."]
    if errors:
        return None, errors
    named = {name: tags.pop(name, "") for name in TAG_COLUMNS}
    return {
        "key": event_id,
        "start_time": ts,
        "provider": provider,
        "model_raw": model,
        "uncached_input_tokens": counts["input_tokens"]
        - counts["cache_read_tokens"]
        - counts["cache_write_tokens"],
        **{k: counts[k] for k in TOKEN_KEYS if k != "input_tokens"},
        "requests": requests,
        "reported_cost": cost,
        "team": team,
        "tags": tags,
        **named,
        "service_tier": "batch" if batch else (tier or "standard"),
    }, {}
