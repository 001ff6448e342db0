"""Comparing two periods."""

from __future__ import annotations

import math
from datetime import date
from typing import NamedTuple

from pydantic import Field

from ..numbers import difference, relative_pct, rounded, share_change
from ..results import WindowInfo
from .schema import DIMENSIONS, NONE, Breakdown, Entry, Schema, Summary, Totals

# ---------------------------------------------------------------------------------------------------
# Comparing two periods

MOVERS = 3
RATES = ("returning_pct", "bounce_pct", "pages_per_session")  # changes in points, not counts


class Change(Schema):
    name: str
    now: int | float | None
    before: int | float | None
    delta: int | float | None = Field(description="now - before (points for _pct)")
    delta_pct: float | None = Field(description="Relative change, %")
    moe: float | None = Field(default=None, description="Estimated: ± of delta, 95%")
    noise: bool = Field(default=False, description="The change is within its margin")


class Mover(Schema):
    v: str
    now: int
    before: int
    delta: int
    share_delta: float = Field(description="Change of share of sessions, points")
    moe: float | None = Field(default=None, description="Estimated: ± pts of share_delta, 95%")
    noise: bool = Field(default=False, description="The change is within its margin")
    bounce_effect: float | None = Field(description="Part of the bounce-rate change, points")
    bounce_moe: float | None = Field(default=None, description="Estimated: ± pts of bounce_effect, 95%")


class BreakdownChange(Schema):
    key: str
    movers: list[Mover] = Field(description="Values whose sessions changed most")
    bounce_drivers: list[Mover] = Field(description="Values that moved the bounce rate most")


class Comparison(Schema):
    website_id: str
    current: WindowInfo
    previous: WindowInfo
    segment: str | None = None
    complete: bool = Field(description="Both periods read in full")
    estimated: bool = Field(default=False, description="A period was sampled: changes carry margins")
    notes: list[str]
    totals: list[Change]
    breakdowns: list[BreakdownChange] = Field(description="country, device, browser, os, then fields")
    pages: list[BreakdownChange] = Field(description="landing, exit")


def compare(current: Summary, previous: Summary, *, movers: int = MOVERS) -> Comparison:
    """What changed from `previous` to `current`: every total, and per breakdown the values that moved most.

    Only values whose count is known in both periods are compared: listed in both top lists, or absent
    from a list that leaves nothing in `other` (then their count is 0). Contributions to the bounce-rate
    change add up, over all values, to the change itself."""
    notes = [f"{label}: {s.coverage.note}" for label, s in (("now", current), ("before", previous)) if s.coverage.note]
    if current.segment != previous.segment:
        notes.append("the two periods were read with different segments")
    days = [
        (date.fromisoformat(s.window.end) - date.fromisoformat(s.window.start)).days + 1 for s in (current, previous)
    ]
    if days[0] != days[1]:
        notes.append(f"the periods differ in length ({days[0]} vs {days[1]} days)")
    n = len(DIMENSIONS)

    def changes(now: list[Breakdown], before: list[Breakdown]) -> list[BreakdownChange]:
        old = {b.key: b for b in before}
        return [
            _breakdown_change(b, _known(old.get(b.key), b.key, previous), current, previous, movers)
            for b in now
            if not b.id_like
        ]

    return Comparison(
        website_id=current.website_id,
        current=current.window,
        previous=previous.window,
        segment=current.segment,
        complete=current.coverage.complete and previous.coverage.complete,
        estimated=current.coverage.sample is not None or previous.coverage.sample is not None,
        notes=notes,
        totals=[
            _change(name, now, before, _margin(current.totals.moe, previous.totals.moe, name))
            for name, now, before in _total_pairs(current.totals, previous.totals)
        ],
        breakdowns=changes(current.breakdowns[:n], previous.breakdowns[:n])
        + changes(current.breakdowns[n:], previous.breakdowns[n:]),
        pages=changes([b for b in current.pages if b.key in ("landing", "exit")], previous.pages),
    )


def _total_pairs(now: Totals, before: Totals) -> list[tuple[str, int | float | None, int | float | None]]:
    pairs: list[tuple[str, int | float | None, int | float | None]] = [
        (name, getattr(now, name), getattr(before, name)) for name in Totals.model_fields if name not in _NOT_FIGURES
    ]
    return pairs + [
        (f"duration_{name}", getattr(now.duration, name), getattr(before.duration, name))
        for name in ("mean", "median", "p90")
    ]


_NOT_FIGURES = ("duration", "moe")


def _margin(now: dict[str, float] | None, before: dict[str, float] | None, name: str) -> float | None:
    """The margin of a difference of two independent estimates; an exact side adds nothing. None when
    neither side is estimated, or an estimated side has no margin for this figure."""
    sides = [m.get(name) for m in (now, before) if m is not None]
    if not sides or None in sides:
        return None
    return math.sqrt(sum(x * x for x in sides if x is not None))


def _change(name: str, now: int | float | None, before: int | float | None, moe: float | None = None) -> Change:
    moe = None if moe is None else rounded(moe, 2)
    if now is None or before is None:
        return Change(name=name, now=now, before=before, delta=None, delta_pct=None, moe=moe)
    delta = now - before
    return Change(
        name=name,
        now=now,
        before=before,
        delta=difference(now, before, 2) if isinstance(delta, float) else delta,
        delta_pct=relative_pct(delta, before),
        moe=moe,
        noise=moe is not None and abs(delta) <= moe,
    )


class _Known(NamedTuple):
    """What one period's breakdown tells exactly: {value: (sessions, bounces)}, and whether values it does
    not list had no sessions (nothing left in `other`) or are hidden there."""

    counts: dict[str, tuple[int, int]]
    margins: dict[str, float]  # value -> ± pts of its share, when estimated
    bounce_margins: dict[str, float]  # value -> ± pts of its bounces' share of all sessions, when estimated
    complete: bool

    def get(self, value: str) -> tuple[int, int] | None:
        found = self.counts.get(value)
        return found if found is not None else (0, 0) if self.complete else None


def _known(b: Breakdown | None, key: str, summary: Summary) -> _Known:
    if b is None:  # a field key not broken down: beyond the cap, or no session had it (all `(none)`)
        if key in summary.other_fields:
            return _Known({}, {}, {}, complete=False)
        return _Known({NONE: (summary.totals.sessions, summary.totals.bounces)}, {}, {}, complete=True)
    margins = {e.v: e.moe for e in b.top if e.moe is not None}
    bounce_margins = {e.v: m for e in b.top if (m := _bounce_share_margin(e)) is not None}
    return _Known({e.v: (e.n, e.bounces or 0) for e in b.top}, margins, bounce_margins, complete=b.other == 0)


def _bounce_share_margin(e: Entry) -> float | None:
    """± pts of a value's bounces as a share of all sessions (its share times its bounce rate), from the
    margins of both (delta method; the two taken as independent)."""
    if e.moe is None or e.bounce_moe is None or e.bounce_pct is None:
        return None
    return math.hypot(e.bounce_pct / 100 * e.moe, e.pct / 100 * e.bounce_moe)


def _breakdown_change(b: Breakdown, old: _Known, current: Summary, previous: Summary, movers: int) -> BreakdownChange:
    now_sessions, old_sessions = current.totals.sessions, previous.totals.sessions
    new = _known(b, b.key, current)
    rows = []
    for value in new.counts.keys() | old.counts.keys():
        now, before = new.get(value), old.get(value)
        if now is None or before is None:
            continue  # hidden in `other` on one side: no exact change to report
        share_delta = share_change(now[0], now_sessions, before[0], old_sessions)
        moe = _margin(
            new.margins if current.coverage.sample else None, old.margins if previous.coverage.sample else None, value
        )
        moe = None if moe is None else rounded(moe, 1)
        bounce_moe = _margin(
            new.bounce_margins if current.coverage.sample else None,
            old.bounce_margins if previous.coverage.sample else None,
            value,
        )
        rows.append(
            Mover(
                v=value,
                now=now[0],
                before=before[0],
                delta=now[0] - before[0],
                share_delta=share_delta,
                bounce_effect=share_change(now[1], now_sessions, before[1], old_sessions),
                moe=moe,
                noise=moe is not None and abs(share_delta) <= moe,
                bounce_moe=None if bounce_moe is None else rounded(bounce_moe, 1),
            )
        )
    by_sessions = sorted((m for m in rows if m.delta), key=lambda m: (-abs(m.delta), -abs(m.share_delta), m.v))
    by_bounce = sorted((m for m in rows if m.bounce_effect), key=lambda m: (-abs(m.bounce_effect or 0), m.v))
    return BreakdownChange(key=b.key, movers=by_sessions[:movers], bounce_drivers=by_bounce[:movers])
