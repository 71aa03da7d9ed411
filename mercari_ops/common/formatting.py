"""How the admin writes money and points: one place, so every page reads ¥12,345 and 12,345 pt.

Amounts are integer yen and points are integers throughout the project; a Decimal or float that
reaches these functions is rounded half-up to an integer (a display must not invent sen). `None`
(no value) is shown as an em dash rather than a misleading zero.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MISSING = "\u2014"
YEN_SIGN = "\u00a5"


def _as_int(value) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except (InvalidOperation, ValueError):
        return None


def number(value) -> str:
    """12345 -> '12,345'; not a number -> the value as text (or an em dash for None)."""
    n = _as_int(value)
    if n is None:
        return MISSING if value is None or value == "" else str(value)
    return f"{n:,}"


def yen(value) -> str:
    """12345 -> '¥12,345'; -500 -> '-¥500' (the sign before the currency, as Japanese statements write it)."""
    n = _as_int(value)
    if n is None:
        return MISSING if value is None or value == "" else str(value)
    return f"-{YEN_SIGN}{-n:,}" if n < 0 else f"{YEN_SIGN}{n:,}"


def points(value) -> str:
    """12345 -> '12,345 pt'."""
    n = _as_int(value)
    if n is None:
        return MISSING if value is None or value == "" else str(value)
    return f"{n:,} pt"


def percent(part, whole, digits: int = 1) -> str:
    """Share of `whole` as '12.3%' ('—' when whole is 0 or missing)."""
    p, w = _as_int(part), _as_int(whole)
    if p is None or not w:
        return MISSING
    return f"{100 * p / w:.{digits}f}%"


__all__ = ["MISSING", "number", "percent", "points", "yen"]
