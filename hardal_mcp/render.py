"""Compact text for a model's context, within a hard budget: a digest or a table, never the JSON again.

Every value that a visitor could have typed passes through `sanitize.clean` (one line, bounded) and has
the separators this module draws with (`|` between cells, `·` between entries, `→` between pages)
replaced, so that a value can neither start a line nor fake a cell, an entry or a path step. No I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from .analytics import (
    DIMENSIONS,
    NONE,
    PATH_HEAD,
    PATH_TAIL,
    RATES,
    UTM_KEYS,
    Breakdown,
    Change,
    Comparison,
    Coverage,
    Entry,
    FunnelResult,
    PathResult,
    Series,
    Summary,
    fmt_duration,
)
from .numbers import Exact, ratio, round_half_up
from .results import ActivityResult, SessionsResult, WindowInfo
from .sanitize import clean, elide

BUDGET_CHARS = 15_000  # the hard cap of any tool's text: ≤ 6,000 tokens even for tables (~2.5 chars per token)
LINE_CHARS = 720  # one digest line; entries that do not fit are counted, not shown
SERIES_POINTS = 62  # more points than this are shown as 7-day sums
ROW_FIELDS = 12  # fields shown in one table row
NOTE_CHARS = 600  # a note or segment line: written by this server or the model, but it may quote upstream text
UNKNOWN = "unknown"  # a figure the data cannot give (e.g. a duration when no session has one)

_SEPARATORS = str.maketrans({"|": "¦", "·": "•"})  # path steps have their own arrows replaced too
_BARE = re.compile(r"[^\s,=/\"]+")  # a field key or value that needs no quotes
# An id as `params.check_id` accepts it; anything else is quoted so that no row starts with a value.
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:~@-]{0,127}")


def cell(value: str | None, limit: int = 60) -> str:
    """A visitor-typed value as one safe table cell or list entry; `-` when missing."""
    return clean(value, limit).translate(_SEPARATORS) if value else "-"


def fit_lines(
    header: Sequence[str], rows: Sequence[str], footer: Callable[[int], str], budget: int = BUDGET_CHARS
) -> tuple[str, int]:
    """The header, as many rows as fit, then `footer(rows kept)`, all within `budget` characters.

    Returns the text and the number of rows cut; the footer is where a renderer says what was cut and how
    to get it. Rows are kept in order, never reordered or skipped."""
    lines = list(header)
    used = sum(map(len, lines)) + len(lines)
    kept = 0
    for row in rows:
        tail = footer(kept + 1)
        if used + len(row) + 1 + len(tail) > budget:
            break
        lines.append(row)
        used += len(row) + 1
        kept += 1
    last = footer(kept)
    if last:
        lines.append(last)
    return elide("\n".join(lines), budget), len(rows) - kept


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _fixed(value: Exact, places: int) -> str:
    """`value` with `places` decimals, rounded once, half up (f"{x:.1f}" rounds the binary float half to even)."""
    return f"{round_half_up(value, places):.{places}f}"


def _pct(part: int, whole: int, places: int = 1) -> str:
    """`100 * part / whole` from the exact counts, rounded once, half up; 0 when `whole` is 0."""
    return f"{ratio(part, whole, places):.{places}f}"


def window_text(window: WindowInfo) -> str:
    """`last7days: 2026-11-20 → 2026-11-26 (Europe/Istanbul, 7 days)`."""
    return window.to_window().describe()


# ---------------------------------------------------------------------------------------------------
# Summary


DIGEST_VALUE_CHARS = 48  # a value as a digest lists it; the structured content has it whole


def _entry(e: Entry, bounce: bool = True, share: bool = False, whole: int | None = None) -> str:
    """`Mobile 4300 b52%`: sessions and the group's bounce rate (a legend says so once); `/cart 515 (60%)`
    where the share is the point. Plain digits: every separator and figure costs tokens.

    Rates are rounded once from the exact counts (`whole` = what the shares are of) when the entry is
    counted, not estimated; an estimate (with a margin) has only its rounded rate to show."""
    rate = ""
    if bounce and e.bounce_pct is not None:
        rate = f" b{_pct(e.bounces, e.n, 0) if e.bounces is not None and e.moe is None else _fixed(e.bounce_pct, 0)}"
        rate += f"±{_fixed(e.bounce_moe, 1)}%" if e.bounce_moe is not None else "%"
    part = ""
    if share:
        value: Exact = Fraction(100 * e.n, whole) if whole and e.moe is None else e.pct
        part = f" ({_fixed(value, 0 if value >= 9.5 else 1)}%)"
    return f"{cell(e.v, DIGEST_VALUE_CHARS)} {e.n}{part}{rate}"


def _list_whole(b: Breakdown) -> int:
    """What the shares of a list are of: its entries and `other` always add up to it."""
    return sum(e.n for e in b.top) + b.other


def _breakdown_line(b: Breakdown, label: str | None = None, bounce: bool = True, share: bool = False) -> str:
    """`device: Desktop 5012 50% b31% · Mobile … · other 120 [7 values]`, at most LINE_CHARS:
    entries that do not fit are counted in `other`."""
    name = label or cell(b.key, 40)
    if b.id_like:
        values = UNKNOWN if b.distinct is None else f"{b.distinct - sum(e.v == NONE for e in b.top):,}"
        return " · ".join(
            [f"{name}: {values} distinct values in {_count(b.other, 'session')} (id-like, not listed)"]
            + [_entry(e) for e in b.top]
        )
    tail = f" [{_count(b.distinct, 'value')}]" if b.distinct is not None else f" [distinct values {UNKNOWN}]"
    room = LINE_CHARS - len(name) - len(tail) - 24  # the ` · other N` part
    parts: list[str] = []
    other = b.other
    whole = _list_whole(b)
    for e in b.top:
        text = _entry(e, bounce, share, whole)
        if len(text) + 3 > room:
            room = 0  # keep the order: nothing after the first entry that does not fit
            other += e.n
            continue
        parts.append(text)
        room -= len(text) + 3
    if other:
        parts.append(f"other {other}")
    return f"{name}: {' · '.join(parts)}{tail}"


def _series_line(series: Series, timezone: str) -> str:
    counts = series.counts
    start = datetime.fromisoformat(series.start)
    if series.unit == "hour":
        zone = ZoneInfo(timezone)
        stamps = [(start + timedelta(hours=i)).astimezone(zone) for i in range(len(counts))]
        shifts = len({t.utcoffset() for t in stamps}) > 1  # a DST change: 02h can happen twice, or not at all
        points = [
            (f"{t:%m-%d %H}h" if i == 0 or t.hour == 0 else f"{t:%H}h") + (f"{t:%z}" if shifts else "") + f" {n}"
            for i, (t, n) in enumerate(zip(stamps, counts, strict=True))
        ]
        title = "per hour"
    elif len(counts) <= SERIES_POINTS:
        points = [f"{start + timedelta(days=i):%m-%d} {n}" for i, n in enumerate(counts)]
        title = "per day"
    else:
        weeks = range(0, len(counts), 7)
        points = [f"{start + timedelta(days=i):%m-%d} {sum(counts[i : i + 7])}" for i in weeks]
        if len(counts) % 7:
            points[-1] += f" ({_count(len(counts) % 7, 'day')})"
        peak = max(range(len(counts)), key=lambda i: (counts[i], -i))
        low = min(range(len(counts)), key=lambda i: (counts[i], i))
        title = (
            f"per 7 days from the first (peak day {start + timedelta(days=peak):%m-%d} {counts[peak]:,}, "
            f"lowest {start + timedelta(days=low):%m-%d} {counts[low]:,})"
        )
    margins = [m for m in series.moe or () if m is not None]
    if margins:
        title += f", each {series.unit}'s count ±{_fixed(max(margins), 0)} at most (95%)"
    extra = []
    if series.no_start:
        extra.append(f"{series.no_start:,} without a start time")
    if series.outside:
        extra.append(f"{series.outside:,} starting outside the window")
    return f"{title} ({timezone}): {' · '.join(points)}" + (f" · not shown: {', '.join(extra)}" if extra else "")


def render_summary(s: Summary) -> str:
    """A digest a model reads at a glance: the same few dozen lines whatever the number of sessions."""
    t, d = s.totals, s.totals.duration
    lines = _head("Sessions", s.website_id, s.window, s.coverage, s.segment)
    visitors = f"visitors {UNKNOWN}" if t.visitors is None else _count(t.visitors, "visitor")
    if t.returning is not None and t.visitors is not None:
        visitors += f" ({t.returning:,} returning, {_pct(t.returning, t.visitors)}%)"
    if t.moe is None:  # counted: every rate from the exact counts
        bounce, per_session = _pct(t.bounces, t.sessions), f"{ratio(t.page_views, t.sessions, 2, scale=1):.2f}"
    else:  # estimated: the counts are rounded estimates too, so the estimated rates are shown
        bounce, per_session = _fixed(t.bounce_pct, 1), _fixed(t.pages_per_session, 2)
    lines.append(
        f"totals: {_count(t.sessions, 'session')} · {visitors} · {t.page_views:,} page views "
        f"({per_session}{_moe(t.moe, 'pages_per_session', 2)}/session) · {t.events:,} events · "
        f"bounce {bounce}%{_moe(t.moe, 'bounce_pct')} ({t.bounces:,})"
    )
    if t.moe is not None and d.mean is not None:  # a sample: only the mean is estimated
        margin = t.moe.get("duration_mean")
        mean = fmt_duration(d.mean) + (f" ±{fmt_duration(margin)}" if margin is not None else "")
        unknown = f" · {d.unknown:,} without a duration" if d.unknown else ""
        lines.append(f"duration: mean {mean}{unknown} (median and p90 are not estimated from a sample)")
    elif d.median is not None and d.mean is not None and d.p90 is not None:
        known = f"median {fmt_duration(d.median)} · mean {fmt_duration(d.mean)} · p90 {fmt_duration(d.p90)}"
        lines.append(f"duration: {known}" + (f" · {d.unknown:,} without a duration" if d.unknown else ""))
    else:
        lines.append(f"duration: unknown for all {_count(d.unknown, 'session')}")
    lines.append(
        "lists: value sessions bN% (bounce rate of that group) … [N distinct values]; most viewed counts page views. "
        "bounce = ≤1 page view; returning = visitor with ≥2 sessions in the whole window (even under a segment)"
    )
    lines += [
        _breakdown_line(b, _field_label(b.key) if i >= len(DIMENSIONS) else None) for i, b in enumerate(s.breakdowns)
    ]
    if s.other_fields:
        lines.append(f"other field keys: {', '.join(cell(k, 40) for k in s.other_fields)}")
    labels = {"viewed": "most viewed (page views)", "path": "paths (first 3 pages)"}
    # An exit page's bounce rate says little (a bounce exits where it lands): not shown.
    lines += [_breakdown_line(b, labels.get(b.key), bounce=b.key != "exit") for b in s.pages]
    lines.append(_series_line(s.series, s.window.timezone))
    lines += [f"example {cell(e.id, 128)}: {cell(e.why, 200)}" for e in s.examples]
    return _fit_digest(lines)


def _moe(margins: dict[str, float] | None, name: str, places: int = 1) -> str:
    moe = margins.get(name) if margins else None
    return f" ±{_fixed(moe, places)}" if moe is not None else ""


def _field_label(key: str) -> str:
    """A field key is visitor-typed too: a fixed word before it keeps it from posing as a section."""
    return f"field {cell(key, 40)}"


def _head(title: str, website_id: str, window: WindowInfo, cov: Coverage, segment: str | None) -> list[str]:
    """What every digest starts with: what it is of, how much of the window it covers, which sessions."""
    lines = [f"{title} of {cell(website_id, 80)} · {window_text(window)}"]
    if cov.sample is not None:
        state = "ESTIMATED (counts are scaled estimates; ±: 95% margin)"
    else:
        state = f"complete, {_count(cov.scanned, 'session')} read" if cov.complete else "PARTIAL"
    # A note may quote an upstream error message: cleaned like any upstream text.
    lines.append(f"coverage: {state}" + (f" · {clean(cov.note, NOTE_CHARS)}" if cov.note else ""))
    today = window.to_window().today()
    if date.fromisoformat(window.end) >= today:
        lines.append(f"note: today ({today:%m-%d}) is not over: its counts still grow")
    if segment is not None:
        # Written by the model's own arguments, not by visitors: cleaned, separators kept.
        read = "read " if cov.sample is not None else ""
        lines.append(
            f"segment: {clean(segment, NOTE_CHARS)} · {cov.matched or 0:,} of {cov.scanned:,} sessions {read}match"
        )
    return lines


def _fit_digest(lines: list[str]) -> str:
    """A digest's lines within the budget; its lines are bounded, so this cuts only in extreme cases."""
    body = lines[1:]

    def footer(kept: int) -> str:
        return "" if kept == len(body) else f"({len(body) - kept} lines cut to fit the output budget)"

    return fit_lines(lines[:1], body, footer)[0]


def render_funnel(f: FunnelResult) -> str:
    """Steps with the sessions reaching each, the biggest drop-off, and the breakdown groups."""
    lines = _head("Funnel", f.website_id, f.window, f.coverage, f.segment)
    entered = f.steps[0].sessions
    lines.append(f"{_count(f.sessions, 'session')} · {entered:,} reached step 1 ({_pct(entered, f.sessions)}%)")
    counted = f.coverage.sample is None  # else the counts are rounded estimates: their estimated rates are shown
    for i, step in enumerate(f.steps, 1):
        line = f"step {i} {cell(step.page, 100)}: {step.sessions:,}"
        of_start = _pct(step.sessions, entered) if counted else _fixed(step.from_start_pct, 1)
        if i == 2:
            line += f" ({of_start}%{'' if step.moe is None else f' ±{_fixed(step.moe, 1)}'} of step 1)"
        elif i > 2:
            before = f.steps[i - 2].sessions
            of_prev = _pct(step.sessions, before) if counted else _fixed(step.from_prev_pct or 0.0, 1)
            margin = "" if step.moe is None else f" ±{_fixed(step.moe, 1)}"
            prev_margin = "" if step.prev_moe is None else f" ±{_fixed(step.prev_moe, 1)}"
            line += f" ({of_start}%{margin} of step 1 · {of_prev}%{prev_margin} of step {i - 1})"
        if i == f.worst_step:
            before = f.steps[i - 2].sessions
            lost = before - step.sessions
            line += f" · biggest drop-off: {lost:,} of {before:,} left ({_pct(lost, before)}%)"
            if f.dropped:
                line += f", e.g. {' · '.join(map(cell, f.dropped))}"
        lines.append(line)
    for g in f.groups:
        counts = " → ".join(f"{n:,}" for n in g.steps)
        lines.append(
            f"by {cell(f.breakdown, 40)}: {cell(g.v, 100)} · {_count(g.sessions, 'session')}: {counts} "
            f"({_pct(g.steps[-1], g.steps[0]) if counted else _fixed(g.conversion_pct, 1)}% of step 1 convert)"
        )
    return _fit_digest(lines)


# ---------------------------------------------------------------------------------------------------
# Sessions table


def _token(value: str | None, limit: int = 60) -> str:
    """A key or value inside a `k=v` or `a/b/c` list: JSON-quoted when it holds a separator."""
    text = cell(value, limit)
    return text if value and _BARE.fullmatch(text) and text != "-" else json.dumps(text, ensure_ascii=False)


def _pairs(items: Mapping[str, str], noun: str) -> list[str]:
    shown = [f"{_token(k, 30)}={_token(v)}" for k, v in list(items.items())[:ROW_FIELDS]]
    return shown + ([f"(+{len(items) - ROW_FIELDS} {noun})"] if len(items) > ROW_FIELDS else [])


def _utm_text(fields: Mapping[str, str]) -> str:
    """`google/cpc/brand`: UTM values by position (the legend names them); `-` for a missing one."""
    utm = [fields.get(key) for key in UTM_KEYS]
    while utm and utm[-1] is None:
        utm.pop()
    return "/".join("-" if v is None else _token(v) for v in utm) or "-"


def _id_cell(value: str) -> str:
    return value if _PLAIN_ID.fullmatch(value) else json.dumps(cell(value, 128), ensure_ascii=False)


def _local(at: datetime | None, zone: ZoneInfo, fmt: str) -> str:
    if at is None:
        return "?"
    return (at.replace(tzinfo=zone) if at.tzinfo is None else at.astimezone(zone)).strftime(fmt)


def _value(value: str | None, limit: int) -> str:
    """One table cell: `-` when missing, else the value, JSON-quoted if it holds a separator."""
    return _token(value, limit) if value else "-"


def _whole(cell_text: str) -> str:
    """A composite cell (`a/b/c`, `k=v,k=v`) stays one space-free cell: quoted whole if it holds a space."""
    return json.dumps(cell_text, ensure_ascii=False) if any(c.isspace() for c in cell_text) else cell_text


def _table_path(pages: Sequence[str]) -> str:
    """Pages separated by spaces (a step's own spaces are %20, as in a URL); a long middle elided visibly."""
    steps = [cell(p, 60).replace(" ", "%20") for p in pages]
    if len(steps) > PATH_HEAD + PATH_TAIL + 1:
        steps = [*steps[:PATH_HEAD], f"…(+{len(steps) - PATH_HEAD - PATH_TAIL})…", *steps[-PATH_TAIL:]]
    return " ".join(steps) or "-"


def render_sessions(r: SessionsResult) -> tuple[str, int]:
    """A tab-separated table, one row per session, every field kept (a long path is elided, visibly);
    returns the text and the number of rows cut to fit the budget."""
    zone = ZoneInfo(r.window.timezone)
    page = r.page
    of = f" of {page.total:,}" if page.total is not None else ""
    header = [f"Sessions of {cell(r.website_id, 80)} · {window_text(r.window)}"]
    if r.segment is not None:
        examined = f"{page.returned:,} matches in {r.scanned or 0:,} sessions examined"
        header.append(f"segment: {clean(r.segment, NOTE_CHARS)} · {examined}")
    if r.note:
        header.append(f"note: {clean(r.note, NOTE_CHARS)}")
    header += [
        f"columns, space-separated: id visitor start ({r.window.timezone}; MM-DDTHH:MM when the day changes) "
        "duration_s views/events device browser os country utm_source/medium/campaign/term/content "
        "other_fields(k=v,…) then the pages in order (…(+N)… = N pages not shown)",
        'a value holding a space, "/", "=" or "," is JSON-quoted (a whole cell when it holds a space); '
        "- = missing, ? = unknown",
    ]
    rows = []
    day = ""
    for s in r.sessions:
        start = "?"
        if s.started_at is not None:
            local = s.started_at.replace(tzinfo=zone) if s.started_at.tzinfo is None else s.started_at.astimezone(zone)
            start = f"{local:%H:%M}" if f"{local:%m-%d}" == day else f"{local:%m-%dT%H:%M}"
            day = f"{local:%m-%d}"
        others = {k: v for k, v in s.fields.items() if k not in UTM_KEYS}
        pairs = [f"{_token(k, 30)}={_token(v)}" for k, v in list(others.items())[:ROW_FIELDS]]
        if len(others) > ROW_FIELDS:
            pairs.append(f"…(+{len(others) - ROW_FIELDS})")
        rows.append(
            " ".join(
                (
                    _id_cell(s.id),
                    _value(s.visitor_id, 128),
                    start,
                    "?" if s.duration_s is None else _fixed(s.duration_s, 0),
                    f"{'?' if s.page_views is None else s.page_views}/{'?' if s.events is None else s.events}",
                    *(_value(x, 30) for x in (s.device, s.browser, s.os)),
                    _value(s.country, 40),
                    _whole(_utm_text(s.fields)),
                    _whole(",".join(pairs) or "-"),
                    _table_path(s.pages),
                )
            )
        )

    def footer(kept: int) -> str:
        shown = f"{kept:,} sessions" + (f" (positions from {page.offset:,}{of})" if r.segment else "")
        if r.segment is None and kept:
            shown = f"sessions {page.offset + 1:,}–{page.offset + kept:,}{of}"
        cut = len(rows) - kept + r.omitted
        if cut:
            resume = page.offset + kept if kept < len(rows) else page.next_offset
            return f"{shown} · {cut:,} more rows cut to fit the output budget: continue with offset={resume}"
        more = f"next_offset={page.next_offset}" if page.next_offset is not None else "end of list"
        return f"{shown} · {more}"

    if not rows:
        header.append(f"no sessions at offset {page.offset:,}{of}")
    return fit_lines(header, rows, footer)


# ---------------------------------------------------------------------------------------------------
# Activity timeline


def _offset(seconds: float) -> str:
    s = int(round_half_up(seconds))
    return f"+{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render_activity(r: ActivityResult) -> tuple[str, int]:
    """One line per event, times relative to the earliest event of the page; returns the text and the
    number of events cut to fit the budget."""
    zone = ZoneInfo(r.timezone)
    stamps = [e.at for e in r.events if e.at is not None]
    origin = min(stamps) if stamps else None
    order = "oldest first" if r.order == "asc" else "newest first"
    total = f" of {r.total_events:,}" if r.total_events is not None else ""
    header = [
        f"Activity of session {cell(r.session_id, 128)} on {cell(r.website_id, 80)} · page {r.page}, {order}",
        f"times: +h:mm:ss from {_local(origin, zone, '%Y-%m-%d %H:%M:%S')} ({r.timezone}), the earliest event shown"
        if origin
        else "times: unknown",
        "columns: time type name url properties",
    ]
    rows = []
    for e in r.events:
        when = "?" if e.at is None or origin is None else _offset((e.at - origin).total_seconds())
        name = "" if e.name == e.type else f" {cell(e.name, 60)}"
        props = _pairs(e.properties, "properties")
        rows.append(" ".join([when, cell(e.type, 40) + name, cell(e.url, 120), *props]))

    def footer(kept: int) -> str:
        shown = f"{_count(kept, 'event')} shown{total}"
        if kept < len(rows):
            return (
                f"{shown} · {len(rows) - kept} more events of this page cut to fit the output budget: "
                f"ask for the same events with a smaller limit (limit={max(kept, 1)}) and page through"
            )
        return f"{shown} · " + (f"next_page={r.next_page}" if r.has_more and r.next_page else "last page")

    return fit_lines(header, rows, footer)


def render_paths(p: PathResult) -> str:
    """Around a page: where visitors came from and went next. Without one: flows and whole paths."""
    lines = _head("Paths", p.website_id, p.window, p.coverage, p.segment)
    if p.previous is not None and p.next is not None:
        lines.append(
            f"around {cell(p.page, 100)}: {_count(p.views or 0, 'view')}{_moe(p.moe, 'views', 0)} in "
            f"{p.visits or 0:,}{_moe(p.moe, 'visits', 0)} of {_count(p.sessions, 'session')}"
            f"{_moe(p.moe, 'sessions', 0)} (each view counted)"
        )
        lines += [_breakdown_line(p.previous, "came from", share=True), _breakdown_line(p.next, "went to", share=True)]
    if p.flows is not None:
        lines.append(_breakdown_line(p.flows, f"landing → exit, of {_count(p.sessions, 'session')}", share=True))
    if p.paths is not None:
        distinct = p.paths.distinct
        lines.append(f"whole paths: {_count(distinct, 'distinct path') if distinct is not None else UNKNOWN}")
        whole = _list_whole(p.paths)
        lines += [
            f"path {cell(e.v, 1000)}: {e.n:,} ({_pct(e.n, whole) if e.moe is None else _fixed(e.pct, 1)}%)"
            for e in p.paths.top
        ]
        if p.paths.other:
            lines.append(f"other paths: {p.paths.other:,}")
    return _fit_digest(lines)


_SECONDS = ("duration_mean", "duration_median", "duration_p90")


def _signed(value: float, text: str) -> str:
    return f"{'+' if value >= 0 else '−'}{text}"


def _total_text(name: str, value: float | None) -> str:
    """One compared total as the digest shows it; `unknown` when a period has no value (no session with a
    duration, visitors of a sample, …)."""
    if value is None:
        return UNKNOWN
    if name in _SECONDS:
        return fmt_duration(value)
    if name.endswith("_pct"):
        return f"{_fixed(value, 1)}%"
    if name in RATES:
        return _fixed(value, 2)
    return f"{value:,}"


def _change_text(c: Change) -> str:
    """`sessions 10,234 vs 9,876 (+358, +3.6%)`; rates change in points, durations in time; `change n/a`
    when either side is unknown; an estimated change carries its margin, and `noise` within it."""
    text = _plain_change(c)
    if c.moe is not None and c.delta is not None:
        text = text[:-1] + f", ±{_fixed(c.moe, 1 if c.moe >= 1 else 2)}{', within noise' if c.noise else ''})"
    return text


def _plain_change(c: Change) -> str:
    label = c.name.replace("_pct", " rate").replace("_", " ")
    values = f"{label} {_total_text(c.name, c.now)} vs {_total_text(c.name, c.before)}"
    if c.now is None or c.before is None or c.delta is None:
        return f"{values} (change n/a)"
    relative = "" if c.delta_pct is None else f", {_signed(c.delta_pct, f'{_fixed(abs(c.delta_pct), 1)}%')}"
    if c.name in _SECONDS:
        return f"{values} ({_signed(c.delta, fmt_duration(abs(c.delta)))}{relative})"
    if c.name.endswith("_pct"):
        return f"{values} ({_signed(c.delta, f'{_fixed(abs(c.delta), 1)} pts')})"
    if c.name in RATES:
        return f"{values} ({_signed(c.delta, _fixed(abs(c.delta), 2))}{relative})"
    return f"{values} ({_signed(c.delta, f'{abs(c.delta):,}')}{relative})"


def render_comparison(c: Comparison) -> str:
    """Every total against the previous period, then per breakdown the values that moved most."""
    lines = [
        f"Comparison of {cell(c.website_id, 80)} · now {window_text(c.current)} · before {window_text(c.previous)}",
        "complete: both periods read in full"
        if c.complete
        else "ESTIMATED: a period was sampled; ± is a change's 95% margin, 'within noise' when it is smaller"
        if c.estimated
        else "PARTIAL: not every session of both periods read",
    ]
    lines += [f"note: {clean(n, NOTE_CHARS)}" for n in c.notes]
    if c.segment is not None:
        lines.append(f"segment: {clean(c.segment, NOTE_CHARS)}")
    groups = [c.totals[:4], c.totals[4:9], c.totals[9:]]  # visitors · activity and bounce · durations
    lines += ["totals: " + " · ".join(map(_change_text, group)) for group in groups if group]
    for i, b in enumerate(c.breakdowns + c.pages):
        parts = [
            f"{cell(m.v, 100)} {_signed(m.delta, f'{abs(m.delta):,}')} ({m.now:,} vs {m.before:,}, "
            f"share {_signed(m.share_delta, _fixed(abs(m.share_delta), 1))} pts"
            + (f" ±{_fixed(m.moe, 1)}{', within noise' if m.noise else ''})" if m.moe is not None else ")")
            for m in b.movers
        ]
        drivers = [
            f"{cell(m.v, 100)} {_signed(m.bounce_effect or 0, _fixed(abs(m.bounce_effect or 0), 1))}"
            + (f" ±{_fixed(m.bounce_moe, 1)}" if m.bounce_moe is not None else "")
            + " pts"
            for m in b.bounce_drivers
        ]
        label = b.key if i < len(DIMENSIONS) or i >= len(c.breakdowns) else _field_label(b.key)
        text = " · ".join(parts) or "no exact change among the listed values"
        lines.append(f"{label}: {text}" + (f" · bounce-rate change from: {' · '.join(drivers)}" if drivers else ""))
    return _fit_digest(lines)
