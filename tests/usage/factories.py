from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from apps.usage.services import usage_events_ingest


def event(
    i=0, *, ts=None, provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=200, **extra
):
    ts = ts or datetime.now(UTC) - timedelta(minutes=10)
    return {
        "id": f"evt-{i}",
        "timestamp": ts.isoformat() if isinstance(ts, datetime) else ts,
        "provider": provider,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        **extra,
    }


def ingest(org, events, **kwargs):
    return usage_events_ingest(org=org, events=events, **kwargs)


def provider_row(org, key, **overrides):
    """One ledger row in the generic shape a provider pull writes (ledger.insert_records), every column given:
    a reported cost of one hour's bucket on 18 Nov 2026."""
    cost = overrides.pop("cost", Decimal("0.0000012345"))
    return {
        "org_id": org.pk,
        "source": "provider",
        "key": key,
        "connection_id": 42,
        "token_id": None,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "model_raw": "gpt-4o-mini",
        "project_id": None,
        "workspace_id": None,
        "api_key_id": None,
        "team_id": None,
        "team_source": "none",
        "feature": "",
        "task_id": "",
        "customer": "",
        "end_user": "",
        "environment": "",
        "tags": {},
        "start_time": datetime(2026, 11, 18, 10, tzinfo=UTC),
        "day": date(2026, 11, 18),
        "bucket_seconds": 3600,
        "service_tier": "standard",
        "context_window": "",
        "requests": 3,
        "uncached_input_tokens": 10,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 5,
        "reasoning_tokens": 0,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "cost": cost,
        "currency": "USD",
        "cost_basis": "reported",
        "computed_cost": None,
        "reported_cost": cost,
        "price_ref": "",
        **overrides,
    }
