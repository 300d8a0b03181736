from datetime import UTC, datetime, timedelta

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
