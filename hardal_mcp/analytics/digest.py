"""The digest of a window: totals, breakdowns, pages, time series and example sessions, streamed."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

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
from .segment import Segment, page_views_expr

if TYPE_CHECKING:
    import polars as pl


_EPOCH = 719_163 * 86_400  # 1970-01-01 on the clock's scale (seconds since 0001-01-01, see `_Clock`)


class Digest(Scan):
    """Totals, breakdowns, pages, time series and example sessions of one window, streamed: each frame
    becomes grouped counts (the engine's work), merged into tallies of distinct values."""

    def __init__(self, window: Window, *, top: int = 10, segment: Segment | None = None) -> None:
        super().__init__(segment)
        self.window = window
        self.top = _check_top(top)
        # Visitors of matching sessions, per frame; without a segment, every visitor scanned is one.
        self._members: list[pl.Series] | None = None if segment is None else []
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
        # Each batch's grouped counts, by what they count; summed by the engine once, when the scan ends.
        self._counts: dict[str, list[pl.DataFrame]] = {name: [] for name in (*DIMENSIONS, "path", "fields", "views")}
        self._clock = _Clock(window)
        self._series = [0] * (len(self._clock.bounds) - 1)
        self._no_start = 0
        self._outside = 0
        self._durations: list[pl.DataFrame] = []  # (id, duration, bounced) of sessions with a known duration
        self._most_pages = (-1, "")  # (page views, session id) of the session with most page views

    @property
    def count(self) -> int:
        """Sessions digested so far (unique, and matching the segment if there is one): what is pending
        is counted first."""
        if not self._closed:
            self._flush()
        return self.matched

    def _consume(self, frame: pl.DataFrame) -> None:
        import polars as pl

        if not frame.height:
            return
        views = page_views_expr()
        f = frame.with_columns(views.alias("pv"), (views <= 1).alias("bounced"))
        page_views, events, bounces = f.select(
            pl.col("pv").sum(), pl.col("events").sum(), pl.col("bounced").sum()
        ).row(0)
        self._page_views += page_views
        self._events += events
        self._bounces += bounces
        counts = self._counts
        for name in DIMENSIONS:
            counts[name].append(f.group_by("bounced", name).len())
        # The page key as columns (grouping by four text columns is several times quicker than by a list):
        # the first three pages (null past the end; pages are never null), and the last one past three.
        pages = pl.col("pages")
        first = [pages.list.get(i, null_on_oob=True).alias(f"p{i}") for i in range(3)]
        last = pl.when(pages.list.len() > 3).then(pages.list.last()).alias("last")
        counts["path"].append(f.group_by("bounced", *first, last).len())
        pairs = f.select("bounced", "fields").explode("fields").drop_nulls("fields").unnest("fields")
        counts["fields"].append(pairs.group_by("bounced", "key", "value").len())
        counts["views"].append(f.select(pl.col("pages").explode().drop_nulls()).group_by("pages").len())
        self._place(f)
        self._durations.append(f.filter(pl.col("duration").is_not_null()).select("id", "duration", "bounced"))
        most, most_id = self._most_pages
        top: int | None = f.get_column("pv").max()  # type: ignore[assignment]  # an Int64 column's
        if top is not None and top >= most:
            top_id = str(f.filter(pl.col("pv") == top).get_column("id").min())
            if top > most or top_id < most_id:
                self._most_pages = (top, top_id)
        if self._members is not None:
            self._members.append(f.get_column("visitor_id"))

    def _tally(self) -> None:
        """Sum the batches' grouped counts (once, as the scan ends) into the tallies of distinct values."""
        import polars as pl

        def summed(name: str) -> Iterable[tuple[Any, ...]]:
            parts = self._counts[name]
            self._counts[name] = []
            if not parts:
                return ()
            whole = pl.concat(parts)
            return whole.group_by(whole.columns[:-1]).agg(pl.col("len").sum()).iter_rows()

        for tally, name in zip(self._dims, DIMENSIONS, strict=False):
            _count(tally, summed(name))
        _count(self._dims[4], ((b, _page_key(p), c) for b, *p, c in summed("path")))
        for bounced, k, v, c in summed("fields"):
            by_key = self._fields_bounced if bounced else self._fields_stayed
            values = by_key.get(k)
            if values is None:
                values = by_key[k] = {}
            values[v] = values.get(v, 0) + c
        self._views.update(dict(summed("views")))

    def _place(self, f: pl.DataFrame) -> None:
        """Each start time on the series' scale: its day (or hour) bucket, or outside the window."""
        import polars as pl

        clock, bounds, series = self._clock, self._clock.bounds, self._series
        started = f.get_column("started")
        self._no_start += started.null_count()
        known = f.filter(pl.col("started").is_not_null())
        instants = known.select(
            (pl.col("started").dt.epoch("us") // 1_000_000 + _EPOCH).alias("t"),
            pl.col("offset").is_null().alias("naive"),
        )
        naive = instants.get_column("naive")
        t = instants.get_column("t")
        if naive.any():  # a start sent without an offset is read in the window's zone, as Python reads it
            walls = known.filter(naive).get_column("started").dt.replace_time_zone(None).to_list()
            t = t.scatter(naive.arg_true(), [clock.instant(wall) for wall in walls])
        first, last = bounds[0], bounds[-1]
        inside = t.filter((t >= first) & (t < last))
        self._outside += t.len() - inside.len()
        buckets = pl.Series(bounds, dtype=pl.Int64).search_sorted(inside, side="right") - 1
        for bucket, c in buckets.value_counts().iter_rows():
            series[bucket] += c

    # --- summary: all the sorting and text work, over distinct values ----------------------------

    def summary(
        self, *, website_id: str, total: int | None, partial_reason: str | None = None, record: Record | None = None
    ) -> Summary:
        """The digest; it ends the scan (no `add` after it). `record` receives every estimable count."""
        self._close()
        self._tally()
        sessions, top = self.matched, self.top
        durations = self._known_durations()
        if record is not None:
            seconds = durations.get_column("duration")
            record.scalars.update(
                sessions=sessions,
                page_views=self._page_views,
                events=self._events,
                bounces=self._bounces,
                duration_sum=float(seconds.sum()),
                duration_n=seconds.len(),
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
            totals=self._totals(durations),
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
            examples=self._examples(durations),
        )

    def record(self) -> Record:
        record = Record()
        self.summary(website_id="", total=None, record=record)
        return record

    def _known_durations(self) -> pl.DataFrame:
        """(id, duration, bounced) of every session digested whose duration is known, shortest first."""
        import polars as pl

        schema = {"id": pl.String, "duration": pl.Float64, "bounced": pl.Boolean}
        return pl.concat([pl.DataFrame(schema=schema), *self._durations]).sort("duration", "id")

    def _totals(self, durations: pl.DataFrame) -> Totals:
        import polars as pl

        sessions = self.matched
        visits = self.visits()
        if self._members is not None:
            members = pl.concat([pl.Series("visitor_id", [], pl.String), *self._members]).drop_nulls().unique()
            visits = visits.join(members.to_frame(), on="visitor_id", how="semi")
        visitors = visits.height
        returning = visits.filter(pl.col("sessions") > 1).height
        ordered = durations.get_column("duration")  # a column: `quantile` reads the two values it needs
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
                mean=rounded(float(ordered.sum()) / len(ordered), 1) if len(ordered) else None,
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

    def _examples(self, durations: pl.DataFrame) -> list[Example]:
        """Sessions worth opening, each chosen deterministically (ties go to the smallest id)."""
        import polars as pl

        found: dict[str, list[str]] = {}
        if durations.height:  # sorted by duration, then id
            longest = durations.get_column("duration")[-1]
            sid = durations.filter(pl.col("duration") == longest).get_column("id")[0]
            found.setdefault(sid, []).append(f"longest ({fmt_duration(longest)})")
        views, sid = self._most_pages
        if views > 1:
            found.setdefault(sid, []).append(f"most page views ({views:,})")
        for bounced, what in ((True, "bounce"), (False, "multi-page session")):
            kind = durations.filter(pl.col("bounced") == bounced)
            if kind.height:  # the lower median (a real session's) and the smallest id having it
                median = kind.get_column("duration")[(kind.height - 1) // 2]
                sid = kind.filter(pl.col("duration") == median).get_column("id")[0]
                found.setdefault(sid, []).append(
                    f"typical {what}: median duration {fmt_duration(median)} of {kind.height:,}"
                )
        return [Example(id=clean(sid, 128), why="; ".join(whys)) for sid, whys in found.items()]


def _page_key(columns: list[str | None]) -> tuple[str | None, ...]:
    """The page key (see `Digest`) from its columns: every page for up to three, else the first three,
    None and the last."""
    first, last = columns[:3], columns[3]
    return (*first, None, last) if last is not None else tuple(p for p in first if p is not None)


def _count(tally: _Tally, rows: Iterable[tuple[bool, Any, int]]) -> None:
    """Merge (bounced, value, sessions) rows into a tally."""
    bounced, stayed = tally.bounced, tally.stayed
    for b, value, n in rows:
        side = bounced if b else stayed
        side[value] = side.get(value, 0) + n


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
