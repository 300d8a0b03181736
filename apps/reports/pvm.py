"""Price-volume-mix variance of a team's spend between two months (pure, Decimal, exact).

For one team, with models m (provider + model), tokens q (input incl. cached + output) and cost c in the previous
month (0) and this month (1):

* Q0, Q1 = total tokens; C0, C1 = total cost; dC = C1 - C0; P0 = C0 / Q0, the previous average cost per token.
* p0_m = c0_m / q0_m, p1_m = c1_m / q1_m: each model's effective unit cost (list price, discounts, cache hits and
  batch tier all move it).
* B = continuing models (tokens in both months).

    volume = (Q1 - Q0) * P0                      more or fewer tokens, at last month's average unit cost
    price  = sum over B of q1_m * (p1_m - p0_m)  this month's tokens of each continuing model, at its unit cost change
    mix    = dC - volume - price                  the rest: the shift between models

`mix` equals sum over B of q1_m * (p0_m - P0) + sum over new models of (c1_m - q1_m * P0): tokens moved to a model
dearer than the old average raise it, to a cheaper one lower it. A new model has no previous unit cost, so its whole
cost against the old average is mix; a model that disappeared takes its tokens out of the volume at the old average,
and the difference between its unit cost and that average shows in the mix (the remaining models' shares grew).

Edge cases: a team without tokens last month (new team, or only token-less cost) puts its whole change in volume;
a team without tokens this month has volume = -C0 and the rest (cost without tokens) in mix.

`volume` and `price` are rounded to the ledger's 10 decimal places, `mix` is the remainder, so
volume + price + mix == dC exactly, for every team and for the org (the sum of the teams).
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

ZERO = Decimal(0)
LEDGER = Decimal("0.0000000001")


@dataclass(frozen=True)
class Line:
    tokens: int
    cost: Decimal


@dataclass(frozen=True)
class Variance:
    previous: Decimal
    current: Decimal
    change: Decimal
    volume: Decimal
    price: Decimal
    mix: Decimal
    previous_tokens: int
    current_tokens: int
    new_models: tuple[str, ...]
    gone_models: tuple[str, ...]


def _q(value: Decimal) -> Decimal:
    return value.quantize(LEDGER, rounding=ROUND_HALF_EVEN)


def variance(previous: dict[str, Line], current: dict[str, Line]) -> Variance:
    c0 = sum((line.cost for line in previous.values()), ZERO)
    c1 = sum((line.cost for line in current.values()), ZERO)
    q0 = sum(line.tokens for line in previous.values())
    q1 = sum(line.tokens for line in current.values())
    change = c1 - c0
    with_tokens_0 = {m for m, line in previous.items() if line.tokens > 0}
    with_tokens_1 = {m for m, line in current.items() if line.tokens > 0}
    new = tuple(sorted(with_tokens_1 - with_tokens_0))
    gone = tuple(sorted(with_tokens_0 - with_tokens_1))
    if q0 == 0:
        volume, price = change, ZERO
    else:
        with localcontext() as ctx:
            ctx.prec = 80
            avg0 = c0 / q0
            volume = _q((q1 - q0) * avg0)
            price = _q(
                sum(
                    (
                        current[m].tokens
                        * (current[m].cost / current[m].tokens - previous[m].cost / previous[m].tokens)
                        for m in with_tokens_0 & with_tokens_1
                    ),
                    ZERO,
                )
            )
    return Variance(
        previous=c0,
        current=c1,
        change=change,
        volume=volume,
        price=price,
        mix=change - volume - price,
        previous_tokens=q0,
        current_tokens=q1,
        new_models=new,
        gone_models=gone,
    )
