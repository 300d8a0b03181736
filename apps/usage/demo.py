"""Demo usage: about 90 days of realistic AI spend for the demo org, pushed through the real ingest path.

Deterministic for a given seed and day (random.Random(seed)); event ids are stable, so loading twice into the same
org stores nothing new. One event aggregates the calls of one workload (and customer) in one hour, so 90 days stay
near 50k events; such events are priced as aggregates by the catalog, like provider buckets.

Shape: four teams plus a little unattributed usage; OpenAI and Anthropic with prompt caching, nightly batch jobs,
and a self-hosted model that has no price (so the unpriced warning shows); weekday seasonality, a gentle growth
over the window, and a spike: Growth's gpt-4.1 e-mail drafts ran at 6x for two days about ten days ago.
"""

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from apps.orgs import services as org_services
from apps.orgs.selectors import team_list
from apps.usage.events import MAX_BATCH
from apps.usage.services import usage_events_ingest

CUSTOMERS = [
    ("Initech", 18),
    ("Umbrella Health", 14),
    ("Stark Logistics", 11),
    ("Wayne Retail", 9),
    ("Soylent Foods", 8),
    ("Hooli", 7),
    ("Cyberdyne", 6),
    ("Tyrell Energy", 5),
    ("Vandelay Imports", 5),
    ("Pied Piper", 4),
    ("Dunder Mifflin", 3),
    ("Oceanic Air", 2),
]
TEAMS = {
    "Support": "Support copilot and ticket triage",
    "Search": "Semantic search and embeddings",
    "Growth": "Marketing copy and lead enrichment",
    "Platform": "Shared AI platform and evaluations",
}
SPIKE_DAYS_AGO = (10, 9)
SPIKE_FACTOR = 6
SPIKE_WORKLOAD = "drafts-premium"


@dataclass(frozen=True)
class Workload:
    key: str  # stable part of the event ids
    team: str | None
    feature: str
    provider: str
    model: str
    requests: int  # requests on a weekday at the start of the window
    input_tokens: int  # per request, all input (cached included)
    output_tokens: int
    cached: float = 0.0  # share of input read from the prompt cache
    cache_write: float = 0.0  # share of input written to the cache
    reasoning: float = 0.0  # share of output spent on reasoning
    per_customer: bool = False
    hours: tuple[int, int] = (0, 24)  # active hours, org-local
    weekend: float = 0.45  # weekend volume relative to a weekday
    batch_at: int | None = None  # a nightly batch job at this hour (one event per run), else interactive
    weekdays_only: bool = False
    growth: float = 0.35  # growth over the window


# A table: one workload per entry, positional fields as in Workload.
# fmt: off
WORKLOADS = [
    Workload(
        "copilot", "Support", "support-copilot", "anthropic", "claude-sonnet-4-5", 14_000, 3_600, 420,
        cached=0.6, cache_write=0.03, per_customer=True, growth=0.45,
    ),
    Workload("triage", "Support", "ticket-triage", "openai", "gpt-4o-mini", 30_000, 1_100, 60, cached=0.3),
    Workload(
        "triage-backlog", "Support", "ticket-triage", "openai", "gpt-4o-mini", 20_000, 1_400, 80,
        batch_at=3, weekend=1.0,
    ),
    Workload(
        "embed", "Search", "semantic-search", "openai", "text-embedding-3-small", 1_500_000, 250, 0,
        weekend=0.6,
    ),
    Workload(
        "reindex", "Search", "semantic-search", "openai", "text-embedding-3-small", 20_000, 2_000, 0,
        batch_at=1, weekend=1.0,
    ),
    Workload(
        "answers", "Search", "semantic-search", "openai", "gpt-5-mini", 45_000, 2_800, 350,
        cached=0.4, reasoning=0.5, growth=0.6,
    ),
    Workload(
        "drafts", "Growth", "email-drafts", "anthropic", "claude-haiku-4-5", 20_000, 1_800, 500,
        cached=0.5, cache_write=0.04, per_customer=True, hours=(8, 20), weekend=0.25,
    ),
    Workload(
        SPIKE_WORKLOAD, "Growth", "email-drafts", "openai", "gpt-4.1", 9_000, 2_400, 550,
        hours=(8, 20), weekend=0.25,
    ),
    Workload(
        "evals-sonnet", "Platform", "evals", "anthropic", "claude-sonnet-4-5", 2_500, 6_000, 800,
        batch_at=2, weekdays_only=True, growth=0.2,
    ),
    Workload(
        "evals-gpt", "Platform", "evals", "openai", "gpt-4.1", 1_500, 5_000, 600,
        batch_at=2, weekdays_only=True, growth=0.2,
    ),
    Workload(
        "evals-local", "Platform", "evals", "selfhosted", "llama-3.1-70b-local", 4_000, 3_000, 500,
        hours=(0, 8), weekend=1.0, growth=0.0,
    ),
    Workload("legacy", None, "", "openai", "gpt-4o-mini", 3_000, 900, 120, weekend=1.0, growth=0.0),
]
# fmt: on


def _hour_weight(hour: int, hours: tuple[int, int]) -> float:
    """Traffic peaks early afternoon; nights are quiet but not empty."""
    if not hours[0] <= hour < hours[1]:
        return 0.0
    return 0.25 + math.exp(-(((hour + 0.5 - 14) / 4.5) ** 2))


def _ensure_teams(org) -> None:
    have = {name.lower() for name in team_list(org=org).values_list("name", flat=True)}
    for name, description in TEAMS.items():
        if name.lower() not in have:
            org_services.team_create(org=org, name=name, description=description)


def _event(rng, w: Workload, event_id: str, at: datetime, requests: int, customer: str | None) -> dict:
    jitter = rng.uniform(0.9, 1.1)
    input_tokens = round(requests * w.input_tokens * jitter)
    output_tokens = round(requests * w.output_tokens * rng.uniform(0.9, 1.1))
    cached = min(input_tokens, round(input_tokens * w.cached * rng.uniform(0.92, 1.04)))
    written = min(input_tokens - cached, round(input_tokens * w.cache_write * rng.uniform(0.8, 1.2)))
    tags = {"feature": w.feature} if w.feature else {}
    if customer:
        tags["customer"] = customer
    event = {
        "id": event_id,
        "timestamp": at.isoformat(),
        "provider": w.provider,
        "model": w.model,
        "requests": requests,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tags": tags,
    }
    if cached:
        event["cache_read_tokens"] = cached
    if written:
        event["cache_write_tokens"] = written
    if w.reasoning:
        event["reasoning_tokens"] = min(output_tokens, round(output_tokens * w.reasoning))
    if w.team:
        event["team"] = w.team
    if w.batch_at is not None:
        event["service_tier"] = "batch"
    return event


def demo_events(org, *, days: int = 90, seed: int = 7, now: datetime | None = None):
    """Yields the demo events, oldest first, for the `days` org-local days that end today."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    now = now or timezone.now()
    tz = org.tz
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    spike_days = {today - timedelta(days=n) for n in SPIKE_DAYS_AGO}
    weights = [w for _, w in CUSTOMERS]
    share = [w / sum(weights) for w in weights]
    for index in range(days):
        day: date = first + timedelta(days=index)
        progress = index / max(days - 1, 1)
        weekend = day.weekday() >= 5
        day_noise = rng.gauss(1.0, 0.07)
        for w in WORKLOADS:
            if weekend and w.weekdays_only:
                continue
            level = w.requests * (1 + w.growth * (progress - 0.5)) * max(day_noise, 0.7)
            spike = w.key == SPIKE_WORKLOAD and day in spike_days
            if spike:
                level *= SPIKE_FACTOR  # a runaway loop: weekday volume x6, around the clock
            elif weekend:
                level *= w.weekend
            if w.batch_at is not None:
                at = datetime.combine(day, time(w.batch_at, rng.randrange(60)), tz)
                if at <= now:
                    requests = max(1, round(level * rng.uniform(0.85, 1.15)))
                    yield _event(rng, w, f"demo-{day:%Y%m%d}-{w.key}", at, requests, None)
                continue
            hours = (0, 24) if spike else w.hours
            hour_weights = [_hour_weight(h, hours) for h in range(24)]
            total_weight = sum(hour_weights)
            customers = list(enumerate(CUSTOMERS)) if w.per_customer else [(0, (None, 1))]
            for hour in range(24):
                if not hour_weights[hour]:
                    continue
                at = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), tz)
                if at > now:
                    break
                for c, (customer, _) in customers:
                    part = share[c] if customer else 1.0
                    expected = level * part * hour_weights[hour] / total_weight
                    requests = round(expected * rng.uniform(0.8, 1.2))
                    if requests < 1:
                        continue
                    event_id = f"demo-{day:%Y%m%d}-{w.key}-{hour:02d}" + (f"-c{c}" if customer else "")
                    yield _event(rng, w, event_id, at, requests, customer)


def load_demo_usage(org, *, days: int = 90, seed: int = 7, now: datetime | None = None) -> dict:
    """Pushes the demo events through usage_events_ingest in batches of at most 5000. Returns the counts."""
    _ensure_teams(org)
    accepted = duplicates = 0
    batch: list[dict] = []

    def flush():
        nonlocal accepted, duplicates
        result = usage_events_ingest(org=org, events=batch, now=now)
        if result.rejected_events:  # the generator is wrong, not the ingest: fail loudly
            raise RuntimeError(f"Demo events rejected: {result.rejected_events[:3]}")
        accepted += result.accepted
        duplicates += len(result.duplicate_events)
        batch.clear()

    for event in demo_events(org, days=days, seed=seed, now=now):
        batch.append(event)
        if len(batch) == MAX_BATCH:
            flush()
    if batch:
        flush()
    return {"events": accepted, "duplicates": duplicates, "days": days}
