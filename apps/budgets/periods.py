"""Budget periods in the org's time zone (pure)."""

from datetime import date


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def period_bounds(
    *, period: str, today: date, custom_start: date | None = None, custom_end: date | None = None
) -> tuple[date, date]:
    """[start, end) of the period containing `today` (custom: the fixed range)."""
    if period == "monthly":
        start = today.replace(day=1)
        return start, _add_months(start, 1)
    if period == "quarterly":
        start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        return start, _add_months(start, 3)
    if period == "yearly":
        return date(today.year, 1, 1), date(today.year + 1, 1, 1)
    if period == "custom" and custom_start and custom_end:
        return custom_start, custom_end
    raise ValueError(f"unknown period {period!r}")
