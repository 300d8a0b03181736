"""Formatting for report templates: section data holds money as strings with 10 decimals."""

from datetime import date
from decimal import Decimal

from django import template

from apps.usage.dashboard import format_count, format_money, format_percent, format_tokens

register = template.Library()


@register.filter
def money(value):
    return "–" if value is None else format_money(Decimal(value))


@register.filter
def smoney(value):
    """Signed: +$12.00 / -$3.40."""
    return "–" if value is None else format_money(Decimal(value), signed=True)


@register.filter
def pct(value):
    return format_percent(None if value is None else Decimal(value), signed=True)


@register.filter
def share(value):
    return format_percent(None if value is None else Decimal(value))


@register.filter
def count(value):
    return format_count(value)


@register.filter
def tokens(value):
    return format_tokens(value)


@register.filter
def trend(value):
    """'up', 'down' or 'flat' for a signed amount (colours in the e-mail)."""
    if value is None:
        return "flat"
    d = Decimal(value)
    return "up" if d > 0 else ("down" if d < 0 else "flat")


@register.filter
def isoday(value):
    """'2026-10-03' -> '3 Oct'."""
    d = date.fromisoformat(value)
    return f"{d.day} {d:%b}"


@register.filter
def rpad(value, width):
    return str(value)[: int(width)].ljust(int(width))


@register.filter
def lpad(value, width):
    return str(value).rjust(int(width))
