"""Spend anomalies: a day far above its own series' trailing baseline (pure).

For each series (e.g. ``(team_id, provider, model)``) and the day being checked, over the previous
``lookback_days`` days (the day itself excluded), starting no earlier than the first day present in the series
(days before a series existed are not zero-spend days; pass explicit zeros to say they were); missing days inside
that range are zero:

* baseline = the median spend on the same weekday, raised to its average with the median over all days when that
  is higher. The same-weekday median follows weekly seasonality (a weekend-heavy series' normal weekend is its
  baseline); the blend keeps a quiet weekday (a weekend of a weekday-heavy series) from making any ordinary day look
  like a multiple of it. A zero baseline (sparse series) is replaced by the series' mean, so the multiple is finite.
* scale = max(1.4826 * MAD, 1.2533 * mean absolute deviation, 10% of the baseline) of each window day's deviation
  from the median of the other days of its weekday: robust to a past spike, not zero for a bursty series whose days mostly look
  alike (where the MAD collapses), and never so small that pennies of noise give huge scores.
* score = (spend - baseline) / scale, a robust z-score.

A day is an anomaly when spend >= min_spend, spend >= min_multiple * baseline and score >= MIN_SCORE, and the
series had spend on at least ``min_history_days`` of the lookback days. One anomaly per series per day by
construction; results are ordered by multiple (largest first), then score, then series.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

DEFAULT_LOOKBACK = 28
MIN_SCORE = 3.5  # the usual cut-off for a modified (MAD-based) z-score
MAD_TO_SIGMA = Decimal("1.4826")
MEAN_AD_TO_SIGMA = Decimal("1.2533")
MIN_SCALE_FRACTION = Decimal("0.1")  # nobody's spend is steadier than +-10% of its baseline
MIN_SAME_WEEKDAY = 2  # observations of the same weekday needed for a seasonal median

ZERO = Decimal(0)
CENT = Decimal("0.01")
TENTH = Decimal("0.1")


@dataclass(frozen=True)
class Anomaly:
    series: tuple
    day: date
    spend: Decimal
    baseline: Decimal
    multiple: Decimal
    score: float


def _money(value) -> Decimal:
    if value is None:
        return ZERO
    if isinstance(value, float):
        raise TypeError("money must be Decimal, not float")
    return value if isinstance(value, Decimal) else Decimal(value)


def _check(
    key: tuple,
    daily: dict[date, Decimal],
    day: date,
    *,
    lookback_days: int,
    min_multiple: Decimal,
    min_spend: Decimal,
    min_history_days: int,
) -> Anomaly | None:
    spend = _money(daily.get(day))
    if spend < min_spend or spend <= ZERO:
        return None
    known = [d for d in daily if d < day]
    if not known:
        return None
    first = max(day - timedelta(days=lookback_days), min(known))
    window = [first + timedelta(days=offset) for offset in range((day - first).days)]
    values = [_money(daily.get(d)) for d in window]
    if not values or sum(1 for v in values if v > ZERO) < min_history_days:
        return None

    mean = sum(values, ZERO) / len(values)
    if mean <= ZERO:
        return None
    overall = statistics.median(values)
    by_weekday: dict[int, list[Decimal]] = {}
    for d, v in zip(window, values, strict=True):
        by_weekday.setdefault(d.weekday(), []).append(v)
    weekday_median = {
        w: statistics.median(vs) if len(vs) >= MIN_SAME_WEEKDAY else overall for w, vs in by_weekday.items()
    }

    def baseline_for(weekday: int) -> Decimal:
        same = weekday_median.get(weekday, overall)
        blended = max(same, (same + overall) / 2)
        return blended if blended > ZERO else mean

    baseline = baseline_for(day.weekday())
    if spend < min_multiple * baseline:
        return None

    # Noise around the weekly pattern: each day's deviation from the median of the other days of its weekday (left
    # out, so that a median of two or three days does not fit its own noise away and make the scale too small).
    residuals = []
    for d, v in zip(window, values, strict=True):
        others = list(by_weekday[d.weekday()])
        others.remove(v)
        residuals.append(v - (statistics.median(others) if others else overall))
    centre = statistics.median(residuals)
    deviations = [abs(r - centre) for r in residuals]
    scale = max(
        MAD_TO_SIGMA * statistics.median(deviations),
        MEAN_AD_TO_SIGMA * sum(deviations, ZERO) / len(deviations),
        MIN_SCALE_FRACTION * baseline,
    )
    score = float((spend - baseline) / scale)
    if score < MIN_SCORE:
        return None
    return Anomaly(
        series=key,
        day=day,
        spend=spend.quantize(CENT, rounding=ROUND_HALF_UP),
        baseline=baseline.quantize(CENT, rounding=ROUND_HALF_UP),
        multiple=(spend / baseline).quantize(TENTH, rounding=ROUND_HALF_UP),
        score=round(score, 2),
    )


def detect(
    *,
    series: dict[tuple, dict[date, Decimal]],
    day: date,
    lookback_days: int = DEFAULT_LOOKBACK,
    min_multiple: Decimal = Decimal("3"),
    min_spend: Decimal = Decimal("1"),
    min_history_days: int = 14,
) -> list[Anomaly]:
    """Series whose spend on `day` is far above their own trailing baseline, largest multiple first."""
    if lookback_days < 1:
        raise ValueError("lookback_days must be at least 1")
    found = []
    for key, daily in series.items():
        anomaly = _check(
            key,
            daily,
            day,
            lookback_days=lookback_days,
            min_multiple=_money(min_multiple),
            min_spend=_money(min_spend),
            min_history_days=min_history_days,
        )
        if anomaly is not None:
            found.append(anomaly)
    found.sort(key=lambda a: (-a.multiple, -a.score, repr(a.series)))
    return found
