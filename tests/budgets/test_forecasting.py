import random
from datetime import date, timedelta
from decimal import Decimal

import pytest

from apps.budgets.forecasting import Forecast, forecast

D = Decimal
DAY = timedelta(days=1)
JUNE, JULY = date(2025, 6, 1), date(2025, 7, 1)  # 30 days, 1 June 2025 is a Sunday


def days(start, end):
    out, day = [], start
    while day < end:
        out.append(day)
        day += DAY
    return out


def flat(start, end, amount="10"):
    return dict.fromkeys(days(start, end), D(amount))


def weekday_pattern(day):
    return D("2") if day.weekday() >= 5 else D("10")


def noisy(start, end, rng, level=10.0, spread=0.3):
    return {d: D(str(round(level * rng.uniform(1 - spread, 1 + spread), 2))) for d in days(start, end)}


def width(row):
    return row[3] - row[2]


def test_flat_spend_forecasts_the_run_rate_exactly():
    fc = forecast(
        daily=flat(JUNE, date(2025, 6, 11)),
        period_start=JUNE,
        period_end=JULY,
        today=date(2025, 6, 11),
        amount=D("1000"),
    )
    assert fc.spent_to_date == D("100.00")
    assert fc.daily_rate == D("10.00")
    assert fc.expected_total == D("300.00")
    assert fc.low <= D("300") <= fc.high
    assert fc.crossing_date is None
    # The remaining days, today included, each add $10.
    assert [row[0] for row in fc.projection] == days(date(2025, 6, 11), JULY)
    assert [row[1] for row in fc.projection] == [D(110 + 10 * i) for i in range(20)]
    assert "run rate" in fc.method


def test_flat_spend_with_long_history_uses_the_weekday_model_and_stays_exact():
    fc = forecast(
        daily=flat(date(2025, 4, 1), date(2025, 6, 11)),
        period_start=JUNE,
        period_end=JULY,
        today=date(2025, 6, 11),
        amount=D("1000"),
    )
    assert fc.method == "28-day weekday-adjusted run rate (recency-weighted)"
    assert fc.expected_total == D("300.00")
    assert fc.low < D("300") < fc.high


def test_weekday_pattern_is_followed():
    today = date(2025, 6, 19)  # Thursday; the rest of June is not whole weeks
    daily = {d: weekday_pattern(d) for d in days(date(2025, 5, 1), today)}
    daily[today] = D("4")  # partial day so far
    fc = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=today, amount=D("1000"))

    exact = sum(weekday_pattern(d) for d in days(JUNE, JULY))  # today ends as a normal $10 Thursday
    assert fc.spent_to_date == sum(weekday_pattern(d) for d in days(JUNE, today)) + 4
    assert abs(fc.expected_total - exact) <= D("0.05")
    # A flat run rate would be clearly off here, so the assertion above really checks the seasonality.
    rest = days(today + DAY, JULY)
    naive = fc.spent_to_date + 6 + D(54) / 7 * len(rest)
    assert abs(naive - exact) > D("5")
    # Day by day: the rest of today ($6), then $10 on weekdays and $2 at weekends.
    increments = [fc.projection[0][1] - fc.spent_to_date] + [
        b[1] - a[1] for a, b in zip(fc.projection, fc.projection[1:], strict=False)
    ]
    assert [row[0] for row in fc.projection] == [today, *rest]
    for day, inc in zip([today, *rest], increments, strict=True):
        want = D("6") if day == today else weekday_pattern(day)
        assert abs(inc - want) <= D("0.01"), (day, inc)


def test_today_already_above_its_usual_spend_adds_nothing_more_today():
    today = date(2025, 6, 11)
    daily = flat(JUNE, today)
    daily[today] = D("25")
    fc = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=today, amount=D("1000"))
    assert fc.spent_to_date == D("125.00")
    assert fc.projection[0][1] == D("125.00")
    assert fc.expected_total == D("315.00")  # 125 + 19 more days at $10


def test_growing_spend_leans_on_recent_days():
    today = date(2025, 6, 11)
    start = today - timedelta(days=56)
    daily = {d: D(10 + i) for i, d in enumerate(days(start, today))}  # +$1 a day
    fc = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=today, amount=D("100000"))

    remaining = len(days(today, JULY))
    last_28 = [daily[d] for d in days(today - timedelta(days=28), today)]
    flat_mean = sum(last_28) / 28
    linear_truth = fc.spent_to_date + sum(D(10 + 56 + i) for i in range(remaining))
    assert fc.daily_rate > flat_mean + 3  # recency weighting tracks the growth better than a flat mean
    assert fc.spent_to_date + flat_mean * remaining < fc.expected_total < linear_truth
    assert fc.low < fc.expected_total < fc.high


def test_crossing_date_planted():
    daily = flat(JUNE, date(2025, 6, 11))
    common = {"daily": daily, "period_start": JUNE, "period_end": JULY, "today": date(2025, 6, 11)}
    assert forecast(**common, amount=D("200")).crossing_date == date(2025, 6, 20)
    assert forecast(**common, amount=D("205")).crossing_date == date(2025, 6, 21)
    assert forecast(**common, amount=D("300")).crossing_date == date(2025, 6, 30)
    assert forecast(**common, amount=D("300.01")).crossing_date is None


def test_already_over_budget_reports_the_day_it_crossed():
    today = date(2025, 6, 11)
    fc = forecast(daily=flat(JUNE, today), period_start=JUNE, period_end=JULY, today=today, amount=D("50"))
    assert fc.crossing_date == date(2025, 6, 5)
    assert fc.expected_total == D("300.00")

    daily = flat(JUNE, today)
    daily[today] = D("150")  # today's partial spend pushes it over
    fc = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=today, amount=D("200"))
    assert fc.crossing_date == today


def test_no_history_forecasts_spend_to_date():
    today = date(2025, 6, 11)
    fc = forecast(daily={}, period_start=JUNE, period_end=JULY, today=today, amount=D("100"))
    assert (fc.spent_to_date, fc.expected_total, fc.low, fc.high, fc.daily_rate) == (D(0),) * 5
    assert fc.crossing_date is None
    assert fc.method.startswith("no history")
    assert len(fc.projection) == 20
    assert {row[1:] for row in fc.projection} == {(D(0), D(0), D(0))}

    only_today = forecast(
        daily={today: D("7.5")}, period_start=JUNE, period_end=JULY, today=today, amount=D("100")
    )
    assert only_today.spent_to_date == only_today.expected_total == only_today.high == D("7.50")
    assert only_today.daily_rate == D(0)


def test_period_over():
    daily = flat(date(2025, 5, 1), JULY)
    common = {"daily": daily, "period_start": JUNE, "period_end": JULY, "today": date(2025, 7, 3)}
    fc = forecast(**common, amount=D("250"))
    assert fc.spent_to_date == fc.expected_total == fc.low == fc.high == D("300.00")
    assert fc.projection == []
    assert fc.crossing_date == date(2025, 6, 25)
    assert forecast(**common, amount=D("400")).crossing_date is None


def test_period_not_started():
    today = date(2025, 5, 25)
    fc = forecast(
        daily=flat(date(2025, 5, 1), today), period_start=JUNE, period_end=JULY, today=today, amount=D("200")
    )
    assert fc.spent_to_date == D(0)
    assert fc.expected_total == D("300.00")
    assert fc.projection[0][0] == JUNE and fc.projection[-1][0] == date(2025, 6, 30)
    assert len(fc.projection) == 30
    assert fc.crossing_date == date(2025, 6, 20)


def test_decimal_everywhere():
    rng = random.Random(7)
    today = date(2025, 6, 11)
    fc = forecast(
        daily=noisy(date(2025, 5, 1), today, rng),
        period_start=JUNE,
        period_end=JULY,
        today=today,
        amount=D("250"),
    )
    assert isinstance(fc, Forecast)
    for value in (fc.spent_to_date, fc.expected_total, fc.low, fc.high, fc.daily_rate):
        assert type(value) is Decimal
        assert value == value.quantize(D("0.01"))
    assert fc.projection
    for day, *amounts in fc.projection:
        assert type(day) is date
        assert all(type(a) is Decimal and a == a.quantize(D("0.01")) for a in amounts)
    assert isinstance(fc.crossing_date, date)
    with pytest.raises(TypeError):
        forecast(daily={JUNE: 10.0}, period_start=JUNE, period_end=JULY, today=today, amount=D("1"))


def test_range_widens_with_more_remaining_days():
    rng = random.Random(11)
    today = date(2025, 6, 11)
    daily = noisy(date(2025, 4, 1), today, rng)
    fc = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=today, amount=D("1000"))
    widths = [width(row) for row in fc.projection]
    assert widths[0] > 0
    assert all(b >= a for a, b in zip(widths, widths[1:], strict=False))
    assert widths[-1] > 3 * widths[0]
    for _day, expected, low, high in fc.projection:
        assert low <= expected <= high
    # The same history, a longer period: a wider band at its end.
    longer = forecast(
        daily=daily, period_start=JUNE, period_end=date(2025, 9, 1), today=today, amount=D("1000")
    )
    assert longer.high - longer.low > fc.high - fc.low
    # Less history left to forecast (later in the month): narrower.
    later = date(2025, 6, 25)
    daily.update(noisy(today, later, rng))
    late = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=later, amount=D("1000"))
    assert late.high - late.low < fc.high - fc.low


def test_low_never_negative_nor_below_spend_to_date():
    rng = random.Random(3)
    today = JUNE  # nothing spent in the period yet
    daily = {d: D(rng.choice(["0", "0", "0", "100"])) for d in days(date(2025, 4, 1), today)}  # very bursty
    fc = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=today, amount=D("1000"))
    assert fc.spent_to_date == D(0)
    assert fc.low >= 0
    lows = [row[2] for row in fc.projection]
    assert min(lows) >= 0
    # Without the floor the band would have gone below zero at the start (it is that wide).
    assert fc.projection[0][1] - (fc.projection[0][3] - fc.projection[0][1]) < 0
    assert all(b >= a for a, b in zip(lows, lows[1:], strict=False))

    mid = date(2025, 6, 11)
    daily.update({d: D(rng.choice(["0", "0", "0", "100"])) for d in days(JUNE, mid)})
    fc = forecast(daily=daily, period_start=JUNE, period_end=JULY, today=mid, amount=D("1000"))
    assert all(row[2] >= fc.spent_to_date for row in fc.projection)


def test_band_covers_roughly_eighty_percent_of_noisy_months():
    rng = random.Random(2025)
    today = date(2025, 6, 11)
    inside = 0
    trials = 200
    for _ in range(trials):
        level = rng.uniform(5, 50)
        history = {
            d: D(str(round(level * float(weekday_pattern(d)) / 10 * rng.lognormvariate(0, 0.3), 2)))
            for d in days(date(2025, 4, 1), JULY)
        }
        seen = {d: v for d, v in history.items() if d < today}
        fc = forecast(daily=seen, period_start=JUNE, period_end=JULY, today=today, amount=D("100000"))
        actual = sum(v for d, v in history.items() if JUNE <= d < JULY)
        inside += fc.low <= actual <= fc.high
    assert 0.7 * trials <= inside <= 0.97 * trials


def test_invalid_period_rejected():
    with pytest.raises(ValueError):
        forecast(daily={}, period_start=JULY, period_end=JUNE, today=JUNE, amount=D("1"))
