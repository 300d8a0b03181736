"""Parses the query string of spend and ledger requests into a SpendQuery, with field errors for bad input."""

from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.orgs.models import Team
from apps.usage.selectors import GROUP_BY_CHOICES, SpendQuery
from spendctl.common.parsing import ascii_int

MAX_DAYS = 800
FILTER_KEYS = {
    "start",
    "end",
    "group_by",
    "team",
    "model",
    "provider",
    "format",
    "page",
    "page_size",
    "feature",
    "customer",
}


def _date(value: str, name: str, errors: dict) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = ["Use a date as YYYY-MM-DD."]
        return None


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


LIST_KEYS = {"team", "model", "provider"}


def _flatten(params) -> tuple[dict[str, str], dict[str, list[str]]]:
    """One value per key: list filters may repeat (?model=a&model=b means both); other keys may not."""
    getlist = getattr(params, "getlist", None)
    flat, errors = {}, {}
    for key in params:
        values = getlist(key) if getlist else [params[key]]
        if len(values) > 1 and key not in LIST_KEYS:
            errors[key[:70]] = ["Give this parameter once."]
        flat[key] = ",".join(values) if key in LIST_KEYS else values[-1]
    return flat, errors


def parse_spend_query(org, params, *, allow_group_by: bool = True) -> SpendQuery:
    params, errors = _flatten(params)
    today = timezone.now().astimezone(org.tz).date()
    start = _date(params["start"], "start", errors) if params.get("start") else today.replace(day=1)
    end = _date(params["end"], "end", errors) if params.get("end") else today + timedelta(days=1)
    if start and end:
        if end <= start:
            errors["end"] = ["The end (exclusive) must be after the start."]
        elif (end - start).days > MAX_DAYS:
            errors["end"] = [f"Ask for at most {MAX_DAYS} days at once."]
    group_by = _list(params.get("group_by")) if allow_group_by else []
    bad = [g for g in group_by if g not in GROUP_BY_CHOICES]
    if bad:
        errors["group_by"] = [f"Unknown dimension(s): {', '.join(bad)}. Use: {', '.join(GROUP_BY_CHOICES)}."]
    if "day" in group_by and "month" in group_by:
        errors["group_by"] = ["Group by day or by month, not both."]
    if len(set(group_by)) != len(group_by):
        errors["group_by"] = ["A dimension appears twice."]
    teams, unattributed = [], False
    if params.get("team"):
        by_name = {n.lower(): i for i, n in Team.objects.for_org(org).values_list("id", "name")}
        for value in _list(params["team"]):
            if value.lower() in ("none", "unattributed"):
                unattributed = True
            elif (team_id := ascii_int(value)) in by_name.values():
                teams.append(team_id)
            elif value.lower() in by_name:
                teams.append(by_name[value.lower()])
            else:
                errors["team"] = [f"No team '{value[:100]}' in this organisation."]
    tags = []
    for key, value in params.items():
        if (key.startswith("tag.") or key in ("feature", "customer")) and value == "":
            continue  # an empty filter (a blank form field) filters nothing, like team= or model=
        if key.startswith("tag."):
            tag_key = key[4:]
            if not tag_key or len(tag_key) > 64 or not all(c.isalnum() or c in "_.-" for c in tag_key):
                errors[key[:70]] = ["Tag filters look like tag.<key>=<value>."]
            else:
                tags.append((tag_key, value))
        elif key in ("feature", "customer"):
            tags.append((key, value))
        elif key not in FILTER_KEYS:
            errors[key[:70]] = ["Unknown parameter."]
    if errors:
        raise ValidationError(errors)
    return SpendQuery(
        start=start,
        end=end,
        group_by=tuple(group_by),
        teams=tuple(teams),
        unattributed=unattributed,
        models=tuple(_list(params.get("model"))),
        providers=tuple(_list(params.get("provider"))),
        tags=tuple(tags),
    )
