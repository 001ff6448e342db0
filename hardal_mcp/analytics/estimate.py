"""Estimates from pages spread over a window, with 95% margins for cluster (page) sampling. Pure.

When a window holds more sessions than the rate budget lets us read, the planner reads pages of every
day at places that are spread through the day and rotate from day to day (see `planner`); any page
tells its day's exact total. Each page is a cluster of consecutive sessions, and each day a stratum
whose size is known exactly. Days taken from the day store, or read whole, are read with certainty.
A day without a page (its one read fell past its end, or the budget did not reach it) is collapsed into
the stratum of the day before it (the first ones, after it): its sessions are estimated from its
neighbour's pages.

The estimator of any count is the separate ratio estimator over the strata `g`:

    Y = (what was read with certainty) + sum_g  N_g * (sum of y over g's sampled pages) / (sessions in them)

Shares and rates are ratios of two such estimates; their variance is linearised (Taylor): `z` is the
linearised variable of a page, `t_c = w_g * z_c` its estimated total in its stratum (`w_g` = N_g over
the sessions read in g). The pages are placed systematically, not drawn at random: through each day at
spread places, and from day to day at places that rotate. The variance is therefore the
successive-difference estimator made for systematic samples (Wolter, *Introduction to Variance
Estimation*, 2nd ed. 2007, ch. 8, estimator v2; the same differences as Fay and Train's successive
difference replication, 1995):

    Var = (1 - f) * n / (2 (n - 1)) * sum_i (t_i - t_{i-1})^2

over `n` units in an order where neighbours are alike, `f` the share of pages read, applied to two sets:

* the pages of the days (strata) with two or more, in the order of their places in their days (time of
  day): neighbours are pages at about the same hour, so the spread of the hours, which the design
  balances, is not counted as noise (the spread of a day's pages around their mean, the textbook
  within-stratum estimator, counted it: its margins held 99.4% of figures at three pages a day, measured);
* the days of one page each (one page a day, a systematic sample across days), in date order:
  neighbouring days stand in for each other's spread. A lone one-page stratum is collapsed into its
  neighbour by the planner.

Margins are Student's t (95%) standard errors, with n - 1 degrees of freedom from each set, summed. A
share or rate measured from fewer than `FEW` sampled sessions on one side (a rare value, a low
conversion) gets at least the Wilson interval on the sessions read (`Estimator.proportion`): a spread
measured from a handful of events understates the margin.

Analyses hand their figures to a `Record` while building a result; one record is made of the whole
read (`master`) and one of each sampled page alone. Distinct counts (visitors, distinct values) and
quantiles (median, p90) cannot be given an honest margin from a sample and are left out of estimated
results."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..numbers import rounded, rounded_int
from .schema import DIMENSIONS, Breakdown, Entry, Sample

Z95 = 1.959963984540054
FEW = 20  # sampled events below which a share's margin is at least its Wilson interval's


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
    places: tuple[float, ...] = ()  # each cluster's place in its day, 0 (newest) to 1 (oldest); () unknown

    @property
    def sampled(self) -> bool:
        return bool(self.groups)


Getter = Callable[[Record], float]


class Estimator:
    """Point estimates and margins of anything a `Record` holds, under one `Design`."""

    def __init__(self, design: Design, master: Record, pages: Mapping[int, Record]) -> None:
        self.design = design
        self.master = master
        members: list[list[tuple[int, Record]]] = [[] for _ in design.groups]  # (cluster index, its record)
        for i, (_, group) in enumerate(design.clusters):
            if group is not None:
                members[group].append((i, pages[i]))
        self._members = members
        self._pages = pages
        # Degrees of freedom: one fewer than the differences' units, of each kind (see `variance`).
        several, lone = sum(len(m) for m in members if len(m) > 1), sum(len(m) == 1 for m in members)
        self.t = t95(max(0, several - 1) + max(0, lone - 1))
        self._weights = [
            g.population / max(1, sum(design.clusters[i][0] for i, _ in m))
            for g, m in zip(design.groups, members, strict=True)
        ]

    def value(self, get: Getter) -> float:
        """The estimated total: what the master holds, each sampled page scaled up to its share."""
        extra = sum((w - 1) * get(rec) for w, m in zip(self._weights, self._members, strict=True) for _, rec in m)
        return get(self.master) + extra

    def variance(self, get: Getter) -> float | None:
        """Of `value(get)`: successive differences over the pages of the groups of two or more, in the
        order of their places in their days (time of day), and over the one-page groups, in date order
        (see the module doc). None when a group has no sampled page, or a lone group has one (no spread)."""
        several: list[tuple[float, float]] = []  # (place in its day, estimated total) of each page
        lone: list[float] = []  # estimated total of each one-page group, in date order
        read, pages = [0, 0], [0, 0]  # pages read and pages there are: [groups of several, one-page groups]
        for group, w, members in zip(self.design.groups, self._weights, self._members, strict=True):
            if not members:
                return None
            alone = len(members) == 1
            read[alone] += len(members)
            pages[alone] += group.pages
            if alone:
                lone.append(w * get(members[0][1]))
            else:
                several += [(self._place(c), w * get(rec)) for c, rec in members]
        if len(lone) == 1:
            return None
        several.sort(key=lambda unit: unit[0])
        return sum(
            max(0.0, 1 - read[kind] / pages[kind]) * successive(units)
            for kind, units in enumerate(([total for _, total in several], lone))
            if units
        )

    def _place(self, cluster: int) -> float:
        places = self.design.places
        return places[cluster] if cluster < len(places) else 0.0

    def per_day(self, segmented: bool) -> tuple[list[int], list[float | None], bool]:
        """Sessions per day, their 95% margins (None: exact, or not estimated from pages of the day), and
        whether any is estimated: exact totals where asked; with a segment, each day's total times the
        share matching among that day's own pages (a separate ratio per day, see `_day_margin`)."""
        design, pages = self.design, self._pages
        matching = self.value(scalar("sessions")) / design.total if design.total else 0.0
        counts: list[int] = []
        margins: list[float | None] = []
        estimated = False
        for i, total in enumerate(design.day_totals):
            n = design.unasked if total is None else float(total)
            estimated |= total is None
            mine = [(sessions, pages[c]) for c, (sessions, _) in enumerate(design.clusters) if design.day_of[c] == i]
            margin = None
            if not segmented:
                counts.append(rounded_int(n))
            elif i < len(design.whole) and design.whole[i]:
                counts.append(rounded_int(element(i)(self.master)))
            else:
                read = sum(sessions for sessions, _ in mine)
                share = sum(element(i)(rec) for _, rec in mine) / read if read else matching
                counts.append(rounded_int(n * share))
                margin = _day_margin(n, [(x, element(i)(rec)) for x, rec in mine]) if read else None
                estimated = True
            margins.append(margin)
        return counts, margins, estimated

    def ratio(self, num: Getter, den: Getter, scale: float = 1.0) -> tuple[float, float | None]:
        """`scale * num / den` and its 95% margin."""
        d = self.value(den)
        if d <= 0:
            return 0.0, None
        r = self.value(num) / d
        var = self.variance(lambda rec: num(rec) - r * den(rec))
        moe = None if var is None else scale * self.t * math.sqrt(var) / d
        return scale * r, moe

    def proportion(self, part: Getter, whole: Getter) -> tuple[float, float | None]:
        """`100 * part / whole`, a share of `whole`, and its 95% margin in points: the linearised margin;
        when fewer than FEW sampled sessions are on one side (a rare value, a 1% conversion, a bounce rate
        near 100%), at least the wider side of the Wilson interval on the sessions read in `whole` (a
        design effect of at least 1, as Korn and Graubard 1998 take it): a spread measured from a handful
        of events understates the margin."""
        pct, moe = self.ratio(part, whole, 100.0)
        n, events = whole(self.master), part(self.master)
        if moe is None or n <= 0 or min(events, n - events) >= FEW:
            return pct, moe
        return pct, max(moe, 100 * wilson(min(1.0, max(0.0, pct / 100)), n, self.t))

    def share(self, key: str, text: str) -> tuple[float, float, float | None]:
        """(estimated count, % of the list's whole, margin in points) of a value shown in a list."""
        count = counter(key, text)
        pct, moe = self.proportion(count, lambda rec: rec.wholes.get(key, 0.0))
        return self.value(count), pct, moe


def _day_margin(total: float, pages: list[tuple[int, float]]) -> float:
    """95% margin of `total` times the share matching in one day's pages ((sessions, matching) each): from
    the pages' spread, with Student's t on their own degrees of freedom (one page less), and at least
    the Wilson interval on the sessions read (with one page, only that: a day's one page has no spread)."""
    read = sum(x for x, _ in pages)
    share = sum(y for _, y in pages) / read
    m = len(pages)
    t = t95(m - 1) if m > 1 else Z95
    floor = wilson(share, read, t)
    if m == 1:
        return total * floor
    spread = sum((y - share * x) ** 2 for x, y in pages) / read**2
    pages_total = max(m, math.ceil(total * m / read))  # pages of the day, from the pages read
    return total * max(t * math.sqrt(max(0.0, 1 - m / pages_total) * m / (m - 1) * spread), floor)


def successive(values: Sequence[float]) -> float:
    """The successive-difference estimate of the variance of the sum of `values`, each the estimate of
    one unit of a systematic sample in the order given (Wolter 2007, ch. 8, v2), before the
    finite-population correction."""
    n = len(values)
    return n / (2 * (n - 1)) * sum((a - b) ** 2 for a, b in itertools.pairwise(values)) if n > 1 else 0.0


def wilson(p: float, n: float, z: float) -> float:
    """The larger distance from `p` to an end of the Wilson score interval (`n` trials, quantile `z`)."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(centre + half - p, p - (centre - half))


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
            bounce_pct, bounce_moe = est.proportion(bounces, sessions)
            update.update(
                bounces=rounded_int(est.value(bounces)),
                bounce_pct=rounded(bounce_pct, 1),
                bounce_moe=round_moe(bounce_moe),
            )
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
