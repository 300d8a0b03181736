import random
from decimal import Decimal

from apps.reports.pvm import Line, variance

D = Decimal


def test_volume_price_mix_by_the_definition():
    # Last month 2,000 tokens for $40 (P0 = 0.02); this month 3,000 tokens for $83.
    prev = {"x": Line(1000, D("10")), "y": Line(1000, D("30"))}
    cur = {"x": Line(1500, D("18")), "y": Line(500, D("15")), "z": Line(1000, D("50"))}
    v = variance(prev, cur)
    assert v.change == D("43")
    assert v.volume == D("20")  # +1,000 tokens at 0.02
    assert v.price == D("3")  # x: 1,500 * (0.012 - 0.01); y unchanged
    # mix: x 1,500 * (0.01 - 0.02) + y 500 * (0.03 - 0.02) + new z (50 - 1,000 * 0.02) = -15 + 5 + 30
    assert v.mix == D("20")
    assert v.new_models == ("z",) and v.gone_models == ()
    assert v.volume + v.price + v.mix == v.change


def test_a_new_team_is_all_volume_and_a_gone_team_loses_its_cost_as_volume():
    new = variance({}, {"x": Line(200, D("1"))})
    assert (new.volume, new.price, new.mix) == (D("1"), D(0), D(0))
    gone = variance({"x": Line(100, D("2"))}, {})
    assert (gone.volume, gone.price, gone.mix) == (D("-2"), D(0), D(0))
    assert gone.gone_models == ("x",)


def test_a_model_that_became_priced_is_a_price_effect():
    v = variance({"x": Line(100, D(0))}, {"x": Line(100, D("5"))})
    assert (v.volume, v.price, v.mix) == (D(0), D("5"), D(0))


def test_the_split_adds_up_exactly_whatever_the_figures():
    rng = random.Random(6)
    for _ in range(300):
        models = [f"m{i}" for i in range(rng.randint(1, 6))]

        def side(models=models):
            return {
                m: Line(rng.randint(0, 10**9), D(rng.randint(0, 10**13)) / D(10**10))
                for m in models
                if rng.random() < 0.8
            }

        prev, cur = side(), side()
        v = variance(prev, cur)
        assert v.volume + v.price + v.mix == v.change
        assert v.change == sum((x.cost for x in cur.values()), D(0)) - sum(
            (x.cost for x in prev.values()), D(0)
        )
