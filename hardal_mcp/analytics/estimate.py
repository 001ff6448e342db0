"""Estimates from pages spread evenly over a window, with 95% margins for cluster (page) sampling. Pure.

When a window holds more sessions than the rate budget lets us read, the planner reads every day's
newest page (which also tells the day's exact total) and then further pages at evenly spread offsets.
Each page is a cluster of consecutive sessions. Pages read in full for a day, or taken from the day
store, are read with certainty; the others are a sample of the rest of their day.

The estimator of any count is, per group `g` of consecutive days (a stratum; days are collapsed into a
group until it holds at least two sampled pages, the textbook collapsed-strata approach, which errs on
the wide side):

    Y = (what was read with certainty) + sum_g  N_g * (sum of y over g's sampled pages) / (sessions in them)

where `N_g` is the exact number of sessions of the part of `g`'s days that was sampled. Shares and rates
are ratios of two such estimates; their variance is linearised (Taylor) and computed from the spread of
the sampled pages within each group, with the finite-population correction:

    Var = sum_g (1 - m_g / M_g) * m_g / (m_g - 1) * sum_c (w_g * e_c)^2,   e_c = z_c - r_g * x_c

(`m_g` pages read of `M_g`, `w_g` the group's weight, `x_c` a page's sessions, `z_c` the page's value of
the linearised variable, `r_g` its ratio to sessions in the group). Margins are Student's t (95%, with
sum_g (m_g - 1) degrees of freedom) standard errors.

Analyses hand their figures to a `Record` while building a result; one record is made of the whole
read (`master`) and one of each sampled page alone. Distinct counts (visitors, distinct values) cannot
be scaled from a sample and are left out of estimated results."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..numbers import rounded, rounded_int
from .schema import DIMENSIONS, Breakdown, Entry, Sample

Z95 = 1.959963984540054


def t95(df: int) -> float:
    """Student's t for a two-sided 95% interval with `df` degrees of freedom (Cornish-Fisher expansion
    around the normal quantile; within 1% from 3 degrees of freedom on). A variance measured from few
    pages is itself uncertain: the margin widens accordingly."""
    if df <= 0:
        return math.inf
    z = Z95
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def canon(key: str, text: str) -> str:
    """The identity of a shown value across records: enumerations fold case (`Desktop`/`desktop`)."""
    return text.casefold() if key in DIMENSIONS else text


@dataclass(slots=True)
class Record:
    """Every count an analysis can show, keyed as it shows them: one per page, one of the whole read."""

    counts: dict[tuple[str, str], Sequence[float]] = field(default_factory=dict)  # (list, value) -> counts
    wholes: dict[str, float] = field(default_factory=dict)  # list -> what its shares are of
    shown: dict[str, list[str]] = field(default_factory=dict)  # list -> values shown, in order
    scalars: dict[str, float] = field(default_factory=dict)
    series: list[float] = field(default_factory=list)

    def breakdown(self, key: str, groups: Mapping[str, Sequence[float]], whole: float, shown: Sequence[str]) -> None:
        for text, counts in groups.items():
            self.counts[key, canon(key, text)] = counts
        self.wholes[key] = whole
        self.shown[key] = [canon(key, text) for text in shown]

    def count(self, key: str, text: str, i: int = 0) -> float:
        counts = self.counts.get((key, text))
        return counts[i] if counts is not None and i < len(counts) else 0.0


@dataclass(frozen=True, slots=True)
class Group:
    """Consecutive days whose unread part was sampled as one stratum."""

    population: int  # sessions in the sampled part of these days (exact, from the day totals)
    pages: int  # pages that part spans


@dataclass(frozen=True, slots=True)
class Design:
    """How a window was read: `clusters[i]` is page i's group (None: read with certainty)."""

    total: int  # sessions in the window, exact
    read: int  # sessions read
    days: int  # days of the window
    groups: tuple[Group, ...]
    clusters: tuple[tuple[int, int | None], ...]  # (sessions in the page, group)
    day_totals: tuple[int | None, ...]  # exact sessions per day (None: not asked)
    day_of: tuple[int, ...] = ()  # each cluster's day (index in the window)
    whole: tuple[bool, ...] = ()  # per day: read whole (from the store)
    unasked: float = 0.0  # sessions per day not asked: the rest of the window's exact total, shared evenly

    @property
    def sampled(self) -> bool:
        return bool(self.groups)


Getter = Callable[[Record], float]


class Estimator:
    """Point estimates and margins of anything a `Record` holds, under one `Design`."""

    def __init__(self, design: Design, master: Record, pages: Mapping[int, Record]) -> None:
        self.design = design
        self.master = master
        members: list[list[tuple[int, Record]]] = [[] for _ in design.groups]
        for i, (sessions, group) in enumerate(design.clusters):
            if group is not None:
                members[group].append((sessions, pages[i]))
        self._members = members
        self._pages = pages
        self.t = t95(sum(len(m) - 1 for m in members))  # degrees of freedom: pages beyond one per group
        self._weights = [
            g.population / max(1, sum(n for n, _ in m)) for g, m in zip(design.groups, members, strict=True)
        ]

    def value(self, get: Getter) -> float:
        """The estimated total: what the master holds, each sampled page scaled up to its share."""
        extra = sum((w - 1) * get(rec) for w, m in zip(self._weights, self._members, strict=True) for _, rec in m)
        return get(self.master) + extra

    def variance(self, get: Getter) -> float | None:
        """Of `value(get)`; None when some group has fewer than two sampled pages (no spread to measure)."""
        total = 0.0
        for group, w, members in zip(self.design.groups, self._weights, self._members, strict=True):
            m = len(members)
            if m < 2:
                return None
            values = [get(rec) for _, rec in members]
            sessions = sum(n for n, _ in members)
            r = sum(values) / sessions if sessions else 0.0
            spread = sum((w * (z - r * n)) ** 2 for z, (n, _) in zip(values, members, strict=True))
            total += max(0.0, 1 - m / group.pages) * m / (m - 1) * spread
        return total

    def per_day(self, segmented: bool) -> tuple[list[int], bool]:
        """Sessions per day, and whether any is estimated: exact totals where asked; with a segment, each
        day's total times the share matching among that day's own pages (a separate ratio per day)."""
        design, pages = self.design, self._pages
        matching = self.value(scalar("sessions")) / design.total if design.total else 0.0
        counts: list[int] = []
        estimated = False
        for i, total in enumerate(design.day_totals):
            n = design.unasked if total is None else float(total)
            estimated |= total is None
            mine = [(sessions, pages[c]) for c, (sessions, _) in enumerate(design.clusters) if design.day_of[c] == i]
            if not segmented:
                counts.append(rounded_int(n))
            elif i < len(design.whole) and design.whole[i]:
                counts.append(rounded_int(element(i)(self.master)))
            else:
                read = sum(sessions for sessions, _ in mine)
                share = sum(element(i)(rec) for _, rec in mine) / read if read else matching
                counts.append(rounded_int(n * share))
                estimated = True
        return counts, estimated

    def ratio(self, num: Getter, den: Getter, scale: float = 1.0) -> tuple[float, float | None]:
        """`scale * num / den` and its 95% margin."""
        d = self.value(den)
        if d <= 0:
            return 0.0, None
        r = self.value(num) / d
        var = self.variance(lambda rec: num(rec) - r * den(rec))
        moe = None if var is None else scale * self.t * math.sqrt(var) / d
        return scale * r, moe

    def share(self, key: str, text: str) -> tuple[float, float, float | None]:
        """(estimated count, % of the list's whole, margin in points) of a value shown in a list."""
        count = counter(key, text)
        pct, moe = self.ratio(count, lambda rec: rec.wholes.get(key, 0.0), 100.0)
        return self.value(count), pct, moe


def counter(key: str, text: str, i: int = 0) -> Getter:
    """Count `i` of value `text` in list `key`, read from a record."""
    return lambda rec: rec.count(key, text, i)


def scalar(name: str) -> Getter:
    return lambda rec: rec.scalars.get(name, 0.0)


def element(i: int) -> Getter:
    """Point `i` of the time series."""
    return lambda rec: rec.series[i] if i < len(rec.series) else 0.0


def round_moe(moe: float | None) -> float | None:
    """Margins are shown with one decimal, rounded up: a margin must never look narrower than it is."""
    return None if moe is None else math.ceil(moe * 10 - 1e-9) / 10


def estimate_breakdown(b: Breakdown, est: Estimator) -> Breakdown:
    """The list with every shown count and share scaled from the sample, re-ranked by the estimates."""
    key, master = b.key, est.master
    entries: list[Entry] = []
    for entry, text in zip(b.top, master.shown.get(key, ()), strict=False):
        n, share, moe = est.share(key, text)
        update: dict[str, object] = {"n": rounded_int(n), "pct": rounded(share, 1), "moe": round_moe(moe)}
        if entry.bounces is not None:
            bounces, sessions = counter(key, text, 1), counter(key, text)
            bounce_pct, _ = est.ratio(bounces, sessions, 100.0)
            update.update(bounces=rounded_int(est.value(bounces)), bounce_pct=rounded(bounce_pct, 1))
        entries.append(entry.model_copy(update=update))
    entries.sort(key=lambda e: -e.n)
    whole = rounded_int(est.value(lambda r: r.wholes.get(key, 0.0)))
    return b.model_copy(update={"top": entries, "other": max(0, whole - sum(e.n for e in entries)), "distinct": None})


def sample_info(est: Estimator, lists: Sequence[Breakdown]) -> Sample:
    design = est.design
    margins = [e.moe for b in lists for e in b.top if e.moe is not None]
    days = sum(1 for n in design.day_totals if n is not None)
    return Sample(read=design.read, of=design.total, days=days, moe=max(margins) if margins else None)


def sample_note(sample: Sample, window_days: int) -> str:
    spread = "every day" if sample.days >= window_days else f"{sample.days} of {window_days} days"
    margin = f"; shares ±{sample.moe:g} pts at most (95%)" if sample.moe is not None else "; margins unknown"
    exact = "Totals per day are exact" if sample.days >= window_days else "The window total is exact"
    return (
        f"Estimated from {sample.read:,} of {sample.of:,} sessions spread over {spread}{margin}. "
        f"{exact}; distinct counts (visitors) are not estimated."
    )
