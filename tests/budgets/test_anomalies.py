import random
from datetime import date, timedelta
from decimal import Decimal

import pytest

from apps.budgets.anomalies import Anomaly, detect

D = Decimal
START = date(2025, 3, 3)  # a Monday
DAYS = [START + timedelta(days=i) for i in range(60)]

WEEKDAY_HEAVY = (1, "openai", "gpt-4.1")
WEEKEND_HEAVY = (2, "anthropic", "claude-sonnet-4")
FLAT = (None, "openai", "gpt-4o-mini")


def weekday_heavy(day):
    return 2.0 if day.weekday() >= 5 else 10.0


def weekend_heavy(day):
    return 50.0 if day.weekday() >= 5 else 5.0


def steady(pattern, rng, noise=0.1, days=DAYS):
    return {d: D(str(round(pattern(d) * rng.uniform(1 - noise, 1 + noise), 2))) for d in days}


def all_series(seed=1, noise=0.1):
    rng = random.Random(seed)
    return {
        WEEKDAY_HEAVY: steady(weekday_heavy, rng, noise),
        WEEKEND_HEAVY: steady(weekend_heavy, rng, noise),
        FLAT: steady(lambda d: 3.0, rng, noise=2 * noise),
    }


def detect_all(series, **kwargs):
    return [a for day in DAYS for a in detect(series=series, day=day, **kwargs)]


def first_weekday_after(day, weekday):
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return day


def test_steady_seasonal_noisy_data_raises_nothing_on_any_day():
    for seed in range(5):
        assert detect_all(all_series(seed)) == []
        assert detect_all(all_series(seed, noise=0.4)) == []  # +-40% a day, +-80% on the flat series


def test_money_must_not_be_float():
    with pytest.raises(TypeError):
        detect(series={FLAT: {DAYS[0]: 1.5}}, day=DAYS[0])


def test_planted_six_times_spike_is_caught_once():
    series = all_series()
    spike_day = first_weekday_after(DAYS[40], 2)  # a Wednesday, well past the history requirement
    series[WEEKDAY_HEAVY][spike_day] = D("60.00")  # six times its usual $10 weekday

    found = detect_all(series)
    assert len(found) == 1
    anomaly = found[0]
    assert isinstance(anomaly, Anomaly)
    assert anomaly.series == WEEKDAY_HEAVY
    assert anomaly.day == spike_day
    assert anomaly.spend == D("60.00")
    assert abs(anomaly.multiple - D("6.0")) <= D("0.5")
    assert abs(anomaly.baseline - D("10")) <= D("1")
    assert anomaly.score >= 3.5
    for value in (anomaly.spend, anomaly.baseline, anomaly.multiple):
        assert type(value) is Decimal
    assert anomaly.multiple == anomaly.multiple.quantize(D("0.1"))


def test_an_ongoing_incident_alerts_each_day_once():
    series = all_series()
    first = first_weekday_after(DAYS[40], 1)
    second = first + timedelta(days=1)
    series[WEEKDAY_HEAVY][first] = D("80")
    series[WEEKDAY_HEAVY][second] = D("80")
    found = detect_all(series)
    assert [(a.series, a.day) for a in found] == [(WEEKDAY_HEAVY, first), (WEEKDAY_HEAVY, second)]


def test_weekend_heavy_series_normal_weekend_does_not_trigger():
    series = all_series()
    weekends = [d for d in DAYS[28:] if d.weekday() >= 5]
    assert weekends
    for day in weekends:
        assert series[WEEKEND_HEAVY][day] >= D("45")  # ten times its weekday spend
        assert detect(series=series, day=day) == []
    # The same $50 on a weekday is abnormal for it, which shows the weekend silence comes from seasonality.
    wednesday = first_weekday_after(DAYS[45], 2)
    series[WEEKEND_HEAVY][wednesday] = D("50")
    found = detect(series=series, day=wednesday)
    assert [a.series for a in found] == [WEEKEND_HEAVY]
    assert found[0].multiple >= D("8")


def test_new_series_with_three_days_of_history_does_not_trigger():
    day = DAYS[50]
    series = {
        ("new", "openai", "o3"): {day - timedelta(days=i): D("10") for i in (1, 2, 3)} | {day: D("100")}
    }
    assert detect(series=series, day=day) == []
    # Control: the same spike after twenty days of history is caught.
    seasoned = {
        ("new", "openai", "o3"): {day - timedelta(days=i): D("10") for i in range(1, 21)} | {day: D("100")}
    }
    found = detect(series=seasoned, day=day)
    assert len(found) == 1
    assert found[0].multiple == D("10.0")


def test_tiny_spend_below_min_spend_does_not_trigger():
    day = DAYS[50]
    tiny = {d: D("0.05") for d in DAYS[:50]} | {day: D("0.90")}  # 18 times normal, but under a dollar
    series = {(3, "openai", "gpt-4.1-nano"): tiny}
    assert detect(series=series, day=day) == []
    found = detect(series=series, day=day, min_spend=D("0.5"))
    assert len(found) == 1
    assert found[0].multiple == D("18.0")


def test_two_series_spiking_are_ordered_by_multiple():
    series = all_series()
    day = first_weekday_after(DAYS[45], 3)  # Thursday
    series[WEEKDAY_HEAVY][day] = D("40")  # about 4x
    series[FLAT][day] = D("24")  # about 8x its $3
    found = detect(series=series, day=day)
    assert [a.series for a in found] == [FLAT, WEEKDAY_HEAVY]
    assert abs(found[0].multiple - D("8")) <= D("0.8")
    assert abs(found[1].multiple - D("4")) <= D("0.5")
    assert found[0].multiple > found[1].multiple
    assert {a.day for a in found} == {day}


def test_spike_below_min_multiple_does_not_trigger():
    series = all_series()
    day = first_weekday_after(DAYS[45], 1)
    series[WEEKDAY_HEAVY][day] = D("25")  # 2.5x
    assert detect(series=series, day=day) == []
    assert len(detect(series=series, day=day, min_multiple=D("2"))) == 1


def test_bursty_series_normal_burst_does_not_trigger():
    rng = random.Random(5)
    # Most days a few cents, on about a third of the days a $20 batch job: the median is tiny, the bursts normal.
    bursty = {d: D("20") if rng.random() < 0.35 else D("0.10") for d in DAYS}
    key = (4, "openai", "batch")
    burst_days = [d for d in DAYS[28:] if bursty[d] == D("20")]
    assert burst_days
    for day in burst_days:
        assert detect(series={key: bursty}, day=day) == []
    # Ten times the usual burst is still caught.
    bursty[burst_days[-1]] = D("200")
    assert [a.series for a in detect(series={key: bursty}, day=burst_days[-1])] == [key]


def test_zero_baseline_uses_the_mean_and_needs_history():
    day = first_weekday_after(DAYS[45], 1)  # Tuesday
    window = [day - timedelta(days=i) for i in range(1, 29)]
    mondays_only = {d: D("2") for d in window if d.weekday() == 0} | {day: D("100")}  # $2 on 4 Mondays
    mondays_only[window[-1]] = D("0")  # the series existed, spending nothing, the whole lookback
    key = (5, "openai", "weekly-report")
    assert detect(series={key: mondays_only}, day=day) == []  # 4 days of spend < 14
    found = detect(series={key: mondays_only}, day=day, min_history_days=4)
    assert len(found) == 1
    mean = D(8) / 28
    assert found[0].baseline == mean.quantize(D("0.01"))
    assert found[0].multiple == (D(100) / mean).quantize(D("0.1"))


def test_day_itself_is_not_part_of_its_baseline_and_later_days_are_ignored():
    series = all_series()
    day = first_weekday_after(DAYS[40], 2)
    series[WEEKDAY_HEAVY][day] = D("60")
    for later in DAYS[DAYS.index(day) + 1 :]:
        series[WEEKDAY_HEAVY][later] = D("60")  # a new normal after `day` must not hide the spike on `day`
    found = detect(series=series, day=day)
    assert [a.series for a in found] == [WEEKDAY_HEAVY]
