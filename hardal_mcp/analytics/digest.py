"""The digest of a window: totals, breakdowns, pages, time series and example sessions, streamed."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections import Counter
from itertools import chain
from typing import Any

from ..models import Session
from ..numbers import rounded, rounded_int
from ..params import Window
from ..results import WindowInfo
from ..sanitize import clean

# ---------------------------------------------------------------------------------------------------
# Scanning.
from .estimate import (
    Estimator,
    Getter,
    Record,
    estimate_breakdown,
    round_moe,
    sample_info,
    sample_note,
    scalar,
)
from .scan import Scan
from .schema import (
    _ID_KEY,
    _ID_MIN_DISTINCT,
    DIMENSIONS,
    FIELD_KEYS,
    LISTED_FIELD_KEYS,
    NONE,
    UTM_KEYS,
    Breakdown,
    Durations,
    Example,
    Series,
    Summary,
    Totals,
    _breakdown,
    _check_top,
    _Clock,
    _exit,
    _grouped,
    _label,
    _landing,
    _path,
    _path_label,
    _spelled,
    _Tally,
    field_names,
    fmt_duration,
    identity,
    pct,
    quantile,
    sequence_identity,
    sequence_plain,
)
from .segment import Segment


class _Durations:
    """Known durations of one kind of session (bounces or the rest), each with its session id."""

    __slots__ = ("ids", "seconds")

    def __init__(self) -> None:
        self.seconds = array("d")
        self.ids: list[str] = []

    def typical(self) -> tuple[float, str] | None:
        """The lower-median duration (a real session's) and the smallest id having it."""
        if not self.seconds:
            return None
        median = sorted(self.seconds)[(len(self.seconds) - 1) // 2]
        return median, min(sid for sid, d in zip(self.ids, self.seconds, strict=True) if d == median)


class Digest(Scan):
    """Totals, breakdowns, pages, time series and example sessions of one window, streamed."""

    def __init__(self, window: Window, *, top: int = 10, segment: Segment | None = None) -> None:
        super().__init__(segment)
        self.window = window
        self.top = _check_top(top)
        # Visitors of matching sessions; without a segment, every visitor scanned is one.
        self._members: set[str] | None = None if segment is None else set()
        self._page_views = 0
        self._events = 0
        self._bounces = 0
        # country, device, browser, os, then the page key: every page for up to three pages, else the
        # first three, None and the last one; landing and exit pages and paths all derive from it.
        self._dims = tuple(_Tally() for _ in range(5))
        # field key -> value -> sessions, for bounced and other sessions
        self._fields_bounced: dict[str, dict[str, int]] = {}
        self._fields_stayed: dict[str, dict[str, int]] = {}
        self._views: Counter[str] = Counter()
        self._clock = _Clock(window)
        self._series = [0] * (len(self._clock.bounds) - 1)
        self._no_start = 0
        self._outside = 0
        self._bounce_durations = _Durations()
        self._stay_durations = _Durations()
        self._most_pages = (-1, "")  # (page views, session id) of the session with most page views

    @property
    def count(self) -> int:
        """Sessions digested (unique, and matching the segment if there is one)."""
        return self.matched

    def _consume(self, batch: list[Session]) -> None:
        bounced_dims = tuple(t.bounced for t in self._dims)
        stayed_dims = tuple(t.stayed for t in self._dims)
        clock = self._clock
        bounds, offsets, series = clock.bounds, clock.offsets, self._series
        first, last = bounds[0], bounds[-1]
        most_views, most_id = self._most_pages
        bounce_seconds, bounce_ids = self._bounce_durations.seconds.append, self._bounce_durations.ids.append
        stay_seconds, stay_ids = self._stay_durations.seconds.append, self._stay_durations.ids.append
        page_views = events = bounces = no_start = outside = 0
        for s in batch:
            pages = s.pages
            n = len(pages)
            pv = s.page_views
            if pv is None:
                pv = n
            page_views += pv
            e = s.events
            if e:
                events += e
            if pv <= 1:
                bounces += 1
                country, device, browser, os_, path = bounced_dims
                fields = self._fields_bounced
                add_seconds, add_id = bounce_seconds, bounce_ids
            else:
                country, device, browser, os_, path = stayed_dims
                fields = self._fields_stayed
                add_seconds, add_id = stay_seconds, stay_ids
            v: Any = s.country
            country[v] = country.get(v, 0) + 1
            v = s.device
            device[v] = device.get(v, 0) + 1
            v = s.browser
            browser[v] = browser.get(v, 0) + 1
            v = s.os
            os_[v] = os_.get(v, 0) + 1
            v = tuple(pages) if n <= 3 else (pages[0], pages[1], pages[2], None, pages[-1])
            path[v] = path.get(v, 0) + 1
            for key, v in s.fields.items():
                counts = fields.get(key)
                if counts is None:
                    counts = fields[key] = {}
                counts[v] = counts.get(v, 0) + 1
            started = s.started_at
            if started is None:
                no_start += 1
            else:
                offset = offsets.get(started.tzinfo)
                if offset is None:
                    t = clock.instant(started)
                else:  # wall-clock arithmetic: several times cheaper than datetime.timestamp()
                    t = ((started.toordinal() * 24 + started.hour) * 60 + started.minute) * 60
                    t += started.second - offset
                if first <= t < last:
                    series[bisect_right(bounds, t) - 1] += 1
                else:
                    outside += 1
            d = s.duration
            if d is not None:
                add_seconds(d)
                add_id(s.id)
            if pv >= most_views and (pv > most_views or s.id < most_id):
                most_views, most_id = pv, s.id
        if self._members is not None:
            self._members.update(s.visitor_id for s in batch if s.visitor_id is not None)
        self._page_views += page_views
        self._events += events
        self._bounces += bounces
        self._no_start += no_start
        self._outside += outside
        self._views.update(chain.from_iterable(s.pages for s in batch))
        self._most_pages = (most_views, most_id)

    # --- summary: all the sorting and text work, over distinct values ----------------------------

    def summary(
        self, *, website_id: str, total: int | None, partial_reason: str | None = None, record: Record | None = None
    ) -> Summary:
        """The digest; it ends the scan (no `add` after it). `record` receives every estimable count."""
        self._close()
        sessions, top = self.matched, self.top
        if record is not None:
            durations = self._bounce_durations.seconds, self._stay_durations.seconds
            record.scalars.update(
                sessions=sessions,
                page_views=self._page_views,
                events=self._events,
                bounces=self._bounces,
                duration_sum=sum(map(sum, durations)),
                duration_n=sum(map(len, durations)),
            )
            record.series = [float(n) for n in self._series]
        fields = self._field_tallies()
        broken_down = sum(1 for key, _ in fields if key in UTM_KEYS) + FIELD_KEYS
        names = field_names(key for key, _ in fields[: broken_down + LISTED_FIELD_KEYS])
        landing, exit_, path = self._dims[4].mapped(_landing, _exit, _path)
        return Summary(
            website_id=website_id,
            window=WindowInfo.of(self.window),
            segment=self.segment.describe() if self.segment else None,
            coverage=self.coverage(total, partial_reason),
            totals=self._totals(),
            breakdowns=[
                _enumeration(name, tally, sessions, top, record)
                for name, tally in zip(DIMENSIONS, self._dims[:4], strict=True)
            ]
            + [self._field_breakdown(key, names[key], tally, record) for key, tally in fields[:broken_down]],
            other_fields=[names[key] for key, _ in fields[broken_down:][:LISTED_FIELD_KEYS]],
            pages=[
                _breakdown("landing", landing.grouped(identity)[0], sessions, top, record=record),
                _breakdown("exit", exit_.grouped(identity)[0], sessions, top, record=record),
                _breakdown("viewed", self._viewed(), self._views.total(), top, record=record),
                _paths(path, sessions, top, record),
            ],
            series=Series(
                unit=self._clock.unit,
                start=self._clock.start,
                counts=list(self._series),
                no_start=self._no_start,
                outside=self._outside,
            ),
            examples=self._examples(),
        )

    def record(self) -> Record:
        record = Record()
        self.summary(website_id="", total=None, record=record)
        return record

    def _totals(self) -> Totals:
        sessions = self.matched
        visits = self._visits
        members = visits.keys() if self._members is None else self._members
        visitors = len(members)
        returning = sum(1 for v in members if visits[v] > 1)
        ordered = sorted(chain(self._bounce_durations.seconds, self._stay_durations.seconds))
        return Totals(
            sessions=sessions,
            visitors=visitors,
            returning=returning,
            returning_pct=pct(returning, visitors),
            page_views=self._page_views,
            events=self._events,
            bounces=self._bounces,
            bounce_pct=pct(self._bounces, sessions),
            pages_per_session=rounded(self._page_views / sessions, 2) if sessions else 0.0,
            duration=Durations(
                mean=rounded(sum(ordered) / len(ordered), 1) if ordered else None,
                median=_seconds(quantile(ordered, 0.5)),
                p90=_seconds(quantile(ordered, 0.9)),
                unknown=sessions - len(ordered),
            ),
        )

    def _field_tallies(self) -> list[tuple[str, _Tally]]:
        """Every field key's tally: UTM keys first in their usual order, then by sessions having the key."""
        tallies = {
            key: _Tally(self._fields_bounced.get(key), self._fields_stayed.get(key))
            for key in self._fields_bounced.keys() | self._fields_stayed.keys()
        }
        utm = [(key, tallies.pop(key)) for key in UTM_KEYS if key in tallies]
        having = {key: tally.sessions for key, tally in tallies.items()}
        return utm + sorted(tallies.items(), key=lambda item: (-having[item[0]], item[0]))

    def _field_breakdown(self, key: str, name: str, tally: _Tally, record: Record | None) -> Breakdown:
        groups = tally.grouped(identity)[0]
        having = sum(g[0] for g in groups.values())
        missing = groups.setdefault(NONE, [0, 0])  # an empty value reads as missing too
        missing[0] += self.matched - having
        missing[1] += self._bounces - sum(tally.bounced.values())
        if not missing[0]:
            del groups[NONE]
        values = len(groups) - (NONE in groups)
        id_like = bool(_ID_KEY.search(key)) or (values >= _ID_MIN_DISTINCT and 2 * values >= having)
        return _breakdown(name, groups, self.matched, self.top, id_like=id_like, record=record)

    def _viewed(self) -> dict[str, list[int]]:
        return _grouped(((page, (n,)) for page, n in self._views.items()), identity)[0]

    def _examples(self) -> list[Example]:
        """Sessions worth opening, each chosen deterministically (ties go to the smallest id)."""
        found: dict[str, list[str]] = {}
        kinds = (self._bounce_durations, self._stay_durations)
        longest = max((max(k.seconds) for k in kinds if k.seconds), default=None)
        if longest is not None:
            sid = min(i for k in kinds for i, d in zip(k.ids, k.seconds, strict=True) if d == longest)
            found.setdefault(sid, []).append(f"longest ({fmt_duration(longest)})")
        views, sid = self._most_pages
        if views > 1:
            found.setdefault(sid, []).append(f"most page views ({views:,})")
        for kind, what in zip(kinds, ("bounce", "multi-page session"), strict=True):
            typical = kind.typical()
            if typical:
                found.setdefault(typical[1], []).append(
                    f"typical {what}: median duration {fmt_duration(typical[0])} of {len(kind.ids):,}"
                )
        return [Example(id=clean(sid, 128), why="; ".join(whys)) for sid, whys in found.items()]


def _enumeration(name: str, tally: _Tally, sessions: int, top: int, record: Record | None) -> Breakdown:
    """Upstream spells enumerations inconsistently (`Desktop` / `desktop`): they alone fold case, and each
    group is shown in its most frequent spelling."""
    groups, spelled = tally.grouped(_folded)
    return _breakdown(
        name, groups, sessions, top, record=record, text=lambda i: _label(spelled[i]), plain=_spelled(spelled)
    )


def _folded(value: str | None) -> str:
    return identity(value, fold=True)


def _paths(tally: _Tally, sessions: int, top: int, record: Record | None) -> Breakdown:
    """Sessions by their first three pages, exactly. A path's bounce rate only restates its length: counts alone."""
    groups, spelled = tally.grouped(sequence_identity)
    return _breakdown(
        "path",
        {i: c[:1] for i, c in groups.items()},
        sessions,
        top,
        record=record,
        text=lambda i: _path_label(spelled[i]),
        plain=lambda i, text: sequence_plain(spelled[i], text),
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else rounded(value, 1)


def _margin(est: Estimator, get: Getter) -> float | None:
    """95% margin of an estimated count."""
    var = est.variance(get)
    return None if var is None else est.t * math.sqrt(var)


def estimate_summary(summary: Summary, est: Estimator, *, segmented: bool) -> Summary:
    """The summary of a sampled read with every count scaled to the window's exact totals (see `estimate`)."""
    design = est.design

    sessions = scalar("sessions")
    bounce_pct, bounce_moe = est.proportion(scalar("bounces"), sessions)
    per_session, per_session_moe = est.ratio(scalar("page_views"), sessions)
    mean, mean_moe = est.ratio(scalar("duration_sum"), scalar("duration_n"))
    known = est.value(scalar("duration_n"))
    unknown = est.value(lambda r: r.scalars.get("sessions", 0.0) - r.scalars.get("duration_n", 0.0))
    margins = {"bounce_pct": round_moe(bounce_moe), "pages_per_session": per_session_moe, "duration_mean": mean_moe}
    for name in ("page_views", "events", "bounces") + (("sessions",) if segmented else ()):
        margins[name] = _margin(est, scalar(name))
    count = rounded_int(est.value(sessions)) if segmented else design.total
    totals = summary.totals.model_copy(
        update={
            "sessions": count,
            "visitors": None,
            "returning": None,
            "returning_pct": None,
            "page_views": rounded_int(est.value(scalar("page_views"))),
            "events": rounded_int(est.value(scalar("events"))),
            "bounces": rounded_int(est.value(scalar("bounces"))),
            "bounce_pct": rounded(bounce_pct, 1),
            "pages_per_session": rounded(per_session, 2),
            "duration": summary.totals.duration.model_copy(  # a sample's quantiles have no margin: not shown
                update={
                    "mean": rounded(mean, 1) if known else None,
                    "median": None,
                    "p90": None,
                    "unknown": max(0, rounded_int(unknown)),
                }
            ),
            "moe": {k: rounded(v, 2) for k, v in margins.items() if v is not None},
        }
    )
    breakdowns = [estimate_breakdown(b, est) for b in summary.breakdowns]
    pages = [estimate_breakdown(b, est) for b in summary.pages]
    # Per day even for a one- or two-day window: pages are runs of consecutive sessions, so most hours of a
    # sampled day have no page, and no honest margin; the days' totals are exact.
    counts, point_margins, estimated = est.per_day(segmented)
    series = summary.series.model_copy(
        update={
            "unit": "day",
            "counts": counts,
            "estimated": estimated,
            "moe": [None if m is None else rounded(m, 1) for m in point_margins] if segmented else None,
        }
    )
    sample = sample_info(est, breakdowns + pages)
    coverage = summary.coverage.model_copy(update={"sample": sample, "note": sample_note(sample, design.days)})
    return summary.model_copy(
        update={"totals": totals, "breakdowns": breakdowns, "pages": pages, "series": series, "coverage": coverage}
    )
