"""Rounding done once, half up, from the exact value. Pure; no I/O.

Python's `round()` rounds half to even, and it rounds the binary float, not the number it stands for:
`round(100 * 5 / 16, 1)` is 31.2, and a rate rounded to 31.5 and then again to a whole percent becomes 32
where the exact 34/108 = 31.48…% is 31. Here a ratio of counts is rounded from the exact fraction, once,
with halves away from zero (31.25 → 31.3, −31.25 → −31.3).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

Exact = int | float | Fraction | Decimal


def _fraction(value: Exact) -> Fraction:
    """The exact value; a float stands for the decimal it prints as (`0.15` is 15/100, not 0.1499…)."""
    if isinstance(value, float):
        return Fraction(repr(value))
    return Fraction(value)


def round_half_up(value: Exact, places: int = 0) -> Decimal:
    """`value` rounded to `places` decimals, halves away from zero, as a Decimal with exactly that many
    decimals (so `f"{…:.1f}"` and `str()` print it without a second rounding)."""
    scaled = _fraction(value) * 10**places
    whole = (abs(scaled.numerator) * 2 + scaled.denominator) // (2 * scaled.denominator)  # floor(|x| + 1/2)
    return Decimal(-whole if scaled < 0 else whole).scaleb(-places)


def ratio(part: int, whole: int, places: int = 1, *, scale: int = 100) -> Decimal:
    """`scale * part / whole` (a percentage by default) rounded once, half up; 0 when `whole` is 0."""
    if not whole:
        return Decimal(0).scaleb(-places)
    return round_half_up(Fraction(scale * part, whole), places)


def pct(part: int, whole: int, places: int = 1) -> float:
    """`100 * part / whole` rounded once, half up, for JSON: 5/16 → 31.3 (`round()` gives 31.2)."""
    return float(ratio(part, whole, places))


def rounded(value: Exact, places: int) -> float:
    """A float rounded half up to `places` decimals, for JSON, in place of `round(value, places)`."""
    return float(round_half_up(value, places))


def rounded_int(value: Exact) -> int:
    """The nearest integer, halves away from zero, in place of `round(value)` (2.5 → 3, not 2)."""
    return int(round_half_up(value, 0))


def quotient(part: int, whole: int, places: int = 2) -> float:
    """`part / whole` rounded once, half up (pages per session); 0 when `whole` is 0."""
    return float(ratio(part, whole, places, scale=1))


def difference(now: Exact, before: Exact, places: int) -> float:
    """`now - before` rounded once, half up, from the exact values (no float residue such as 0.0499…)."""
    return float(round_half_up(_fraction(now) - _fraction(before), places))


def relative_pct(delta: Exact, before: Exact, places: int = 1) -> float | None:
    """`100 * delta / before` rounded once, half up; None when `before` is 0 (no relative change)."""
    if not before:
        return None
    return float(round_half_up(100 * _fraction(delta) / _fraction(before), places))


def share_change(now: int, now_whole: int, before: int, before_whole: int, places: int = 1) -> float:
    """The change of a share, in points, from the exact counts: `now/now_whole - before/before_whole`
    (a share of nothing is 0), rounded once, half up."""

    def share(part: int, whole: int) -> Fraction:
        return Fraction(100 * part, whole) if whole else Fraction(0)

    return float(round_half_up(share(now, now_whole) - share(before, before_whole), places))
