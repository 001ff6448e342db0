"""Pure, streaming aggregation of the sessions of one window. No I/O.

A scan is fed pages of parsed sessions as they arrive and keeps counters, never the sessions (but see
`Scan` for a `returning` segment): per-session work is a few dict updates (≈3-4 µs for a digest), and
everything costly (sorting, folding, cleaning visitor-typed text) happens once at the end, over distinct
values rather than sessions. Digest, Funnel and PathAnalysis share that scan; `compare` works on two
finished summaries.

Definitions used throughout:
- a session's page views are `page_views`, or the length of `pages` when upstream omits the count;
- a bounce is a session with at most one page view (zero-page sessions are bounces too);
- a returning visitor has at least two sessions in the window;
- percentiles interpolate linearly between closest ranks (numpy's default), so the median of an even
  count is the mean of the two middle values.
"""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import TzInfo

from .errors import InputError
from .models import Session
from .params import Window
from .results import WindowInfo
from .sanitize import clean, elide

NONE = "(none)"
DIMENSIONS = ("country", "device", "browser", "os")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_TOP = 50
FIELD_KEYS = 5  # custom (non-UTM) field keys broken down, most frequent first
LISTED_FIELD_KEYS = 20  # further keys only named
HOURLY_MAX_DAYS = 2
ARROW = " → "
PATH_HEAD, PATH_TAIL = 3, 2  # pages shown around the elided middle of a long path

_FULL = 1 << 20  # clean() without a practical length cap: merge keys must not be elided
_VALUE_CHARS = 100  # a value as shown
_STEP_CHARS = 50  # one page of a path as shown
_SECOND = timedelta(seconds=1)
_FIXED_OFFSET = (timezone, TzInfo)  # tzinfo types whose offset is the same at every instant
# Keys whose values identify a person or a click rather than a group: a top list of them is useless.
_ID_KEY = re.compile(r"(?:^|[_\-.])(?:id|uid|uuid|guid|email|phone|token)$|[a-z]Id$|clid$", re.IGNORECASE)
_ID_MIN_DISTINCT = 50  # ...and so are keys with mostly unique values, once there are enough of them


# ---------------------------------------------------------------------------------------------------
# Result models: the MCP tool's output schema, so names are short and descriptions few.


def _without_titles(schema: dict[str, Any]) -> None:
    """Pydantic titles every field after its name: tokens that tell a model nothing more."""
    for field in schema.get("properties", {}).values():
        field.pop("title", None)


class Schema(BaseModel):
    """Base of every model here that becomes part of a tool's schema."""

    model_config = ConfigDict(json_schema_extra=_without_titles)


class Entry(Schema):
    v: str = Field(description="Value; (none) = missing")
    n: int = Field(description="Sessions; views in `viewed`, `previous`, `next`")
    pct: float = Field(description="Share of the sessions (views) counted, %")
    bounces: int | None = None
    bounce_pct: float | None = None


class Breakdown(Schema):
    key: str
    distinct: int = Field(description="Distinct values, (none) included")
    top: list[Entry]
    other: int = Field(description="Count outside `top`; top + other = all")
    id_like: bool = Field(default=False, description="Mostly unique values (an id): only counted")


class Durations(Schema):
    """Seconds, over sessions with a known duration."""

    mean: float | None
    median: float | None
    p90: float | None
    unknown: int = Field(description="Sessions without a duration, excluded")


class Totals(Schema):
    sessions: int
    visitors: int = Field(description="Distinct visitor ids")
    returning: int = Field(description="Visitors with ≥2 sessions in the window")
    returning_pct: float = Field(description="returning / visitors, %")
    page_views: int
    events: int
    bounces: int = Field(description="Sessions with ≤1 page view")
    bounce_pct: float
    pages_per_session: float
    duration: Durations


class Series(Schema):
    unit: Literal["day", "hour"]
    start: str = Field(description="Local start of counts[0]")
    counts: list[int] = Field(description="Sessions started in each consecutive unit")
    no_start: int = Field(description="Sessions without a start time")
    outside: int = Field(description="Sessions starting outside the window")


class Example(Schema):
    id: str
    why: str


class Coverage(Schema):
    scanned: int = Field(description="Unique sessions read")
    matched: int | None = Field(default=None, description="Of those, sessions in the segment")
    duplicates: int = Field(description="Repeats skipped while paging")
    unreadable: int = Field(default=0, description="Items Hardal sent that were not readable sessions; not counted")
    total: int | None = Field(description="Sessions Hardal reported")
    complete: bool
    note: str | None = None


class Summary(Schema):
    website_id: str
    window: WindowInfo
    segment: str | None = Field(default=None, description="Filter applied: all figures are of matching sessions")
    coverage: Coverage
    totals: Totals
    breakdowns: list[Breakdown] = Field(description="country, device, browser, os, then fields")
    other_fields: list[str] = Field(description="Further field keys, not broken down")
    pages: list[Breakdown] = Field(description="landing, exit, viewed, path (first 3 pages)")
    series: Series
    examples: list[Example] = Field(description="Sessions worth opening")


# ---------------------------------------------------------------------------------------------------
# Small shared helpers.


def pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def fmt_duration(seconds: float) -> str:
    """`45s`, `3m05s`, `1h02m05s`: compact and unambiguous."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks of an ascending sequence."""
    if not ordered:
        return None
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def _label(value: str | None) -> str:
    text = clean(value, _FULL) if value else ""
    return text or NONE


def _landing(key: tuple[str | None, ...]) -> str | None:
    return key[0] if key else None


def _exit(key: tuple[str | None, ...]) -> str | None:
    return key[-1] if key else None


def _path(key: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """Up to three pages, then None when the session went on."""
    return key[:4]


@lru_cache(maxsize=4096)  # paths repeat their pages: a summary asks for the same few hundred many times
def path_step(page: str, limit: int) -> str:
    """One page of a path as shown: cleaned, elided, and unable to fake a step of its own."""
    return elide(_label(page), limit).replace("→", "⇢")


def path_text(pages: Sequence[str], step_chars: int = 60) -> str:
    """`/ → /a → /b → (+N pages) → /y → /z`: the middle of a long path is elided, visibly."""
    if len(pages) <= PATH_HEAD + PATH_TAIL + 1:
        return ARROW.join(path_step(p, step_chars) for p in pages)
    steps = [path_step(p, step_chars) for p in pages[:PATH_HEAD]]
    steps.append(f"(+{len(pages) - PATH_HEAD - PATH_TAIL:,} pages)")
    return ARROW.join(steps + [path_step(p, step_chars) for p in pages[-PATH_TAIL:]])


def _path_label(key: tuple[str | None, ...]) -> str:
    if not key:
        return NONE
    return ARROW.join("…" if page is None else path_step(page, _STEP_CHARS) for page in key)


def _check_top(top: int) -> int:
    if not 1 <= top <= MAX_TOP:
        raise InputError("top", f"must be between 1 and {MAX_TOP}; got {top}.")
    return top


class _Tally:
    """Sessions per raw value, split by bounce so that each session costs a single dict update."""

    __slots__ = ("bounced", "stayed")

    def __init__(self, bounced: dict[Any, int] | None = None, stayed: dict[Any, int] | None = None) -> None:
        self.bounced: dict[Any, int] = {} if bounced is None else bounced
        self.stayed: dict[Any, int] = {} if stayed is None else stayed

    @property
    def sessions(self) -> int:
        return sum(self.bounced.values()) + sum(self.stayed.values())

    def mapped(self, *keys: Callable[[Any], Any]) -> tuple[_Tally, ...]:
        """The tallies of coarser values derived from each raw value, one per key function, in one pass."""
        outs = tuple(_Tally() for _ in keys)
        for side in ("bounced", "stayed"):
            targets = [(key, getattr(out, side)) for key, out in zip(keys, outs, strict=True)]
            for raw, n in getattr(self, side).items():
                for key, target in targets:
                    k = key(raw)
                    target[k] = target.get(k, 0) + n
        return outs

    def folded(self, label: Callable[[Any], str], casefold: bool = False) -> dict[str, list[int]]:
        """{shown text: [sessions, bounces]}."""
        bounced, stayed = self.bounced, self.stayed
        return _merge(
            ((raw, (bounced.get(raw, 0) + stayed.get(raw, 0), bounced.get(raw, 0))) for raw in bounced.keys() | stayed),
            label,
            casefold,
        )


def _merge(
    items: Iterable[tuple[Any, Sequence[int]]], label: Callable[[Any], str], casefold: bool = False
) -> dict[str, list[int]]:
    """Sum the count vectors of raw values that show the same (cleaned, optionally case-folded) text. A
    merged group is shown in the spelling with the largest first count (ties: the smallest text)."""
    groups: dict[str, list[Any]] = {}  # key -> [counts, shown text, its first count]
    for raw, counts in items:
        text = label(raw)
        key = text.casefold() if casefold else text
        group = groups.get(key)
        if group is None:
            groups[key] = [list(counts), text, counts[0]]
            continue
        group[0] = [a + b for a, b in zip(group[0], counts, strict=True)]
        if (-counts[0], text) < (-group[2], group[1]):
            group[1], group[2] = text, counts[0]
    return {text: counts for counts, text, _ in groups.values()}


def _breakdown(key: str, groups: Mapping[str, Sequence[int]], whole: int, top: int, id_like: bool = False) -> Breakdown:
    """Top `top` groups by count (ties by value); `other` holds the rest, so counts always add up."""
    if id_like:
        shown = [(NONE, groups[NONE])] if NONE in groups else []
    else:
        shown = sorted(groups.items(), key=lambda item: (-item[1][0], item[0]))[:top]
    entries = [
        Entry(v=elide(v, _VALUE_CHARS), n=c[0], pct=pct(c[0], whole))
        if len(c) == 1
        else Entry(v=elide(v, _VALUE_CHARS), n=c[0], pct=pct(c[0], whole), bounces=c[1], bounce_pct=pct(c[1], c[0]))
        for v, c in shown
    ]
    return Breakdown(
        key=key, distinct=len(groups), top=entries, other=whole - sum(e.n for e in entries), id_like=id_like
    )


class _Clock:
    """Where the local days (or hours, for short windows) of the window start, as seconds since 0001-01-01
    UTC; and what it takes to place a start time on that scale."""

    def __init__(self, window: Window) -> None:
        self.zone = ZoneInfo(window.timezone)
        first = datetime(window.start.year, window.start.month, window.start.day, tzinfo=self.zone)
        days = [first.date() + timedelta(days=i) for i in range(window.days + 1)]
        starts = [self.instant(datetime(d.year, d.month, d.day, tzinfo=self.zone)) for d in days]
        self.unit: Literal["day", "hour"] = "day" if window.days > HOURLY_MAX_DAYS else "hour"
        self.start = window.start.isoformat() if self.unit == "day" else first.isoformat(timespec="minutes")
        # Hours are elapsed hours from local midnight: exact across a 23- or 25-hour day.
        self.bounds = starts if self.unit == "day" else [*range(starts[0], starts[-1], 3600), starts[-1]]
        # UTC offset in seconds per fixed-offset tzinfo seen: start times are parsed with one per value.
        self.offsets: dict[tzinfo | None, int] = {}

    def instant(self, at: datetime) -> int:
        """Whole seconds since 0001-01-01 UTC; a naive time is read in the window's zone."""
        zone = at.tzinfo
        if zone is None:
            at = at.replace(tzinfo=self.zone)
        offset = at.utcoffset()
        assert offset is not None
        if type(zone) in _FIXED_OFFSET:
            self.offsets[zone] = offset // _SECOND
        return ((at.toordinal() * 24 + at.hour) * 60 + at.minute) * 60 + at.second - offset // _SECOND


# ---------------------------------------------------------------------------------------------------
# Segments: which sessions a scan keeps.

MAX_PATTERN_CHARS = 200
MAX_WILDCARDS = 10
MAX_SEGMENT_VALUES = 50  # per list

Values = str | list[str]


def _as_list(value: Values) -> list[str]:
    return [value] if isinstance(value, str) else value


def _check_values(value: Values) -> Values:
    if not 1 <= len(_as_list(value)) <= MAX_SEGMENT_VALUES:
        raise ValueError(f"give 1 to {MAX_SEGMENT_VALUES} values")
    return value


def _check_patterns(value: Values) -> Values:
    for pattern in _as_list(value):
        if not pattern.strip():
            raise ValueError("a page pattern is empty; give a path such as '/checkout' or '/blog/*'")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"a page pattern is longer than {MAX_PATTERN_CHARS} characters")
        if pattern.count("*") > MAX_WILDCARDS:
            raise ValueError(f"a page pattern has more than {MAX_WILDCARDS} `*` wildcards")
    return _check_values(value)


Choice = Annotated[Values, AfterValidator(_check_values)]
Patterns = Annotated[Values, AfterValidator(_check_patterns)]


class _Glob:
    """`*` matches any run of characters, nothing else is special. Greedy leftmost search of the literal
    parts is exact for such patterns and linear: no regex backtracking on hostile paths."""

    __slots__ = ("head", "middle", "min_len", "tail")

    def __init__(self, pattern: str) -> None:
        self.head, *middle, self.tail = pattern.split("*")
        self.middle = tuple(middle)
        self.min_len = len(self.head) + len(self.tail)

    def __call__(self, text: str) -> bool:
        if len(text) < self.min_len or not text.startswith(self.head) or not text.endswith(self.tail):
            return False
        pos, end = len(self.head), len(text) - len(self.tail)
        for part in self.middle:
            found = text.find(part, pos, end)
            if found < 0:
                return False
            pos = found + len(part)
        return True


class _Pages:
    """Page patterns: the exact ones in a set, the wildcard ones as globs."""

    __slots__ = ("exact", "globs")

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self.exact = frozenset(p for p in patterns if "*" not in p)
        self.globs = tuple(_Glob(p) for p in patterns if "*" in p)

    def match(self, page: str) -> bool:
        return page in self.exact or any(glob(page) for glob in self.globs)

    def all_in(self, pages: list[str]) -> bool:
        """Every pattern matches some page."""
        return self.exact.issubset(pages) and all(any(map(glob, pages)) for glob in self.globs)

    def any_in(self, pages: list[str]) -> bool:
        return not self.exact.isdisjoint(pages) or any(glob(page) for glob in self.globs for page in pages)


def _folded(values: Values) -> frozenset[str]:
    return frozenset(v.strip().casefold() or _NONE_FOLDED for v in _as_list(values))


_NONE_FOLDED = NONE.casefold()


class Segment(Schema):
    """Which sessions to keep; every criterion given must hold. Text matches ignore case; `(none)`
    matches a missing value. Page patterns match whole pages as listed (query string included); `*` is
    any run of characters."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_titles)

    country: Choice | None = None
    device: Choice | None = None
    browser: Choice | None = None
    os: Choice | None = None
    fields: dict[str, Choice] | None = Field(default=None, description="Field key → value(s), e.g. utm_source")
    visited: Patterns | None = Field(default=None, description="Pages all visited, e.g. ['/checkout']")
    not_visited: Patterns | None = Field(default=None, description="Pages none visited")
    landing_page: Patterns | None = None
    exit_page: Patterns | None = None
    min_duration: float | None = Field(default=None, ge=0, description="Seconds")
    max_duration: float | None = Field(default=None, ge=0, description="Seconds")
    min_pageviews: int | None = Field(default=None, ge=0)
    bounced: bool | None = Field(default=None, description="At most one page view")
    returning: bool | None = Field(default=None, description="Visitor has ≥2 sessions in the window")

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, value: dict[str, Values] | None) -> dict[str, Values] | None:
        if value is not None and not 1 <= len(value) <= MAX_SEGMENT_VALUES:
            raise ValueError(f"give 1 to {MAX_SEGMENT_VALUES} field keys")
        return value

    @model_validator(mode="after")
    def _check_range(self) -> Segment:
        if self.min_duration is not None and self.max_duration is not None and self.min_duration > self.max_duration:
            raise ValueError("min_duration is above max_duration")
        return self

    @classmethod
    def parse(cls, value: Segment | Mapping[str, Any] | None) -> Segment | None:
        """A segment from a tool argument; any problem is an InputError naming the criterion."""
        if value is None or isinstance(value, Segment):
            return value
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = f"segment.{error['loc'][0]}" if error["loc"] else "segment"
            raise InputError(where, error["msg"].removeprefix("Value error, ")) from None

    def matcher(self) -> Callable[[Session], bool]:
        """A fast test of everything but `returning`, which needs the whole window (see `Scan`)."""
        checks: list[Callable[[Session], bool]] = []
        for name in DIMENSIONS:
            wanted = getattr(self, name)
            if wanted is not None:
                checks.append(_value_check(attrgetter(name), _folded(wanted)))
        for key, wanted in (self.fields or {}).items():
            checks.append(_value_check(_field_value(key), _folded(wanted)))
        if self.visited is not None:
            visited = _Pages(_as_list(self.visited)).all_in
            checks.append(lambda s: visited(s.pages))
        if self.not_visited is not None:
            not_visited = _Pages(_as_list(self.not_visited)).any_in
            checks.append(lambda s: not not_visited(s.pages))
        if self.landing_page is not None:
            landing = _Pages(_as_list(self.landing_page)).match
            checks.append(lambda s: bool(s.pages) and landing(s.pages[0]))
        if self.exit_page is not None:
            exit_ = _Pages(_as_list(self.exit_page)).match
            checks.append(lambda s: bool(s.pages) and exit_(s.pages[-1]))
        if self.min_duration is not None or self.max_duration is not None:
            low, high = self.min_duration or 0.0, math.inf if self.max_duration is None else self.max_duration
            checks.append(lambda s: s.duration is not None and low <= s.duration <= high)
        if self.min_pageviews is not None:
            least = self.min_pageviews
            checks.append(lambda s: _page_views(s) >= least)
        if self.bounced is not None:
            bounced = self.bounced
            checks.append(lambda s: (_page_views(s) <= 1) is bounced)
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]
        return lambda s: all(check(s) for check in checks)

    def describe(self) -> str:
        """`country=Turkey,Germany · visited /checkout · returning visitors`: values cleaned and bounded."""
        parts = []
        for name in DIMENSIONS:
            wanted = getattr(self, name)
            if wanted is not None:
                parts.append(f"{name}={_list_text(wanted)}")
        parts += [f"{_field_name(key)}={_list_text(wanted)}" for key, wanted in (self.fields or {}).items()]
        for label, patterns in (
            ("visited", self.visited),
            ("not visited", self.not_visited),
            ("landing", self.landing_page),
            ("exit", self.exit_page),
        ):
            if patterns is not None:
                parts.append(f"{label} {_list_text(patterns)}")
        if self.min_duration is not None:
            parts.append(f"duration ≥ {fmt_duration(self.min_duration)}")
        if self.max_duration is not None:
            parts.append(f"duration ≤ {fmt_duration(self.max_duration)}")
        if self.min_pageviews is not None:
            parts.append(f"≥ {self.min_pageviews} page views")
        if self.bounced is not None:
            parts.append("bounced" if self.bounced else "not bounced")
        if self.returning is not None:
            parts.append("returning visitors" if self.returning else "first-time visitors")
        return " · ".join(parts) or "all sessions"


def _list_text(values: Values) -> str:
    items = _as_list(values)
    return ",".join(elide(_label(v), 40) for v in items[:10]) + ("…" if len(items) > 10 else "")


def _page_views(s: Session) -> int:
    return len(s.pages) if s.page_views is None else s.page_views


def _always(s: Session) -> bool:
    return True


def _field_value(key: str) -> Callable[[Session], str | None]:
    return lambda s: s.fields.get(key)


def value_of(name: str) -> Callable[[Session], str | None]:
    """A session's country, device, browser or os; any other name is a `fields` key."""
    return attrgetter(name) if name in DIMENSIONS else _field_value(name)


def _value_check(value: Callable[[Session], str | None], wanted: frozenset[str]) -> Callable[[Session], bool]:
    def check(s: Session) -> bool:
        v = value(s)
        return (v.strip().casefold() if v else _NONE_FOLDED) in wanted

    return check


# ---------------------------------------------------------------------------------------------------
# Scanning.


class Scan:
    """What every streaming analysis shares: dedupe by session id, sessions per visitor, the segment.

    Subclasses implement `_consume(batch)` over the new, unique, matching sessions of one page, and call
    `_close()` before reading their results.

    `returning` is a property of the visitor over the whole window, known for sure only when the scan
    ends. A matching session whose visitor has been seen once so far is therefore held back: for
    `returning=True` it is released as soon as the visitor's second session arrives (matching or not),
    for `returning=False` it is released at the end unless one did. These are the only sessions a scan
    keeps, at most one per visitor (≈2 KB each); a segment without `returning` holds none."""

    def __init__(self, segment: Segment | None = None) -> None:
        self._seen: set[str] = set()
        self._visits: dict[str, int] = {}  # sessions per visitor id, over everything scanned
        self.duplicates = 0
        self.unreadable = 0  # items of pages that were not readable as sessions
        self.segment = segment
        self._match = segment.matcher() if segment else None
        self._returning = segment.returning if segment else None
        self._held: dict[str, Session] = {}  # visitor id -> a matching session awaiting `returning`
        self._closed = False
        self.matched = 0  # sessions handed to `_consume`

    @property
    def scanned(self) -> int:
        return len(self._seen)

    def add(self, sessions: Iterable[Session], unreadable: int = 0) -> None:
        """Take one page; `unreadable` counts the items of it that were not readable as sessions."""
        if self._closed:
            raise RuntimeError("this scan has been summarised; start a new one")
        self.unreadable += unreadable
        seen, visits, match, returning = self._seen, self._visits, self._match, self._returning
        batch: list[Session] = []
        for s in sessions:
            sid = s.id
            if sid in seen:
                self.duplicates += 1
                continue
            seen.add(sid)
            vid = s.visitor_id
            n = 0
            if vid is not None:
                n = visits.get(vid, 0) + 1
                visits[vid] = n
                if n == 2 and vid in self._held:  # the visitor turns out to be returning
                    first = self._held.pop(vid)
                    if returning:
                        batch.append(first)
            if match is None:
                batch.append(s)
            elif not match(s):
                continue
            elif returning is None:
                batch.append(s)
            elif n == 1:  # too early to tell
                self._held[vid] = s  # type: ignore[index]  # n == 1 implies a visitor id
            elif (n > 1) is returning:  # n == 0: no visitor id, so not returning
                batch.append(s)
        self._take(batch)

    def _close(self) -> None:
        """End of input: sessions still held belong to visitors seen once, who are not returning."""
        if not self._closed:
            self._closed = True
            held = list(self._held.values())
            self._held.clear()
            if self._returning is False:
                self._take(held)

    def _take(self, batch: list[Session]) -> None:
        self.matched += len(batch)
        self._consume(batch)

    def _consume(self, batch: list[Session]) -> None:
        raise NotImplementedError

    def coverage(self, total: int | None, partial_reason: str | None) -> Coverage:
        scanned = self.scanned
        sent = scanned + self.unreadable
        of = f"{scanned:,} of {total:,}" if total is not None else f"the first {scanned:,} (total unknown)"
        if partial_reason:
            note: str | None = f"Covers {of} sessions: {partial_reason.rstrip('.')}."
        elif total is not None and sent < total:
            note = f"Covers {of} sessions: the window changed while it was read; ask again for exact figures."
        else:
            note = None
        if self.duplicates:
            dup = f"{self.duplicates:,} repeated session{'s' if self.duplicates > 1 else ''} skipped while paging."
            note = f"{note} {dup}" if note else dup
        if self.unreadable:
            n = self.unreadable
            bad = f"{n:,} item{'s' if n > 1 else ''} Hardal sent could not be read as sessions (no usable id)."
            note = f"{note} {bad}" if note else bad
        return Coverage(
            scanned=scanned,
            matched=None if self.segment is None else self.matched,
            duplicates=self.duplicates,
            unreadable=self.unreadable,
            total=total,
            complete=not partial_reason and (total is None or sent >= total),
            note=note,
        )


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

    def summary(self, *, website_id: str, total: int | None, partial_reason: str | None = None) -> Summary:
        """The digest; it ends the scan (no `add` after it)."""
        self._close()
        sessions, top = self.matched, self.top
        fields = self._field_tallies()
        broken_down = sum(1 for key, _ in fields if key in UTM_KEYS) + FIELD_KEYS
        landing, exit_, path = self._dims[4].mapped(_landing, _exit, _path)
        return Summary(
            website_id=website_id,
            window=WindowInfo.of(self.window),
            segment=self.segment.describe() if self.segment else None,
            coverage=self.coverage(total, partial_reason),
            totals=self._totals(),
            breakdowns=[
                # Upstream spells enumerations inconsistently (`Desktop` / `desktop`): fold case.
                _breakdown(name, tally.folded(_label, casefold=True), sessions, top)
                for name, tally in zip(DIMENSIONS, self._dims[:4], strict=True)
            ]
            + [self._field_breakdown(key, tally) for key, tally in fields[:broken_down]],
            other_fields=[_field_name(key) for key, _ in fields[broken_down:][:LISTED_FIELD_KEYS]],
            pages=[
                _breakdown("landing", landing.folded(_label), sessions, top),
                _breakdown("exit", exit_.folded(_label), sessions, top),
                _breakdown("viewed", self._viewed(), self._views.total(), top),
                # A path's bounce rate only restates its length: counts alone.
                _breakdown("path", {v: c[:1] for v, c in path.folded(_path_label).items()}, sessions, top),
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
            pages_per_session=round(self._page_views / sessions, 2) if sessions else 0.0,
            duration=Durations(
                mean=round(sum(ordered) / len(ordered), 1) if ordered else None,
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

    def _field_breakdown(self, key: str, tally: _Tally) -> Breakdown:
        groups = tally.folded(_label)
        having = sum(g[0] for g in groups.values())
        missing = groups.setdefault(NONE, [0, 0])  # an empty value reads as missing too
        missing[0] += self.matched - having
        missing[1] += self._bounces - sum(tally.bounced.values())
        if not missing[0]:
            del groups[NONE]
        values = len(groups) - (NONE in groups)
        id_like = bool(_ID_KEY.search(key)) or (values >= _ID_MIN_DISTINCT and 2 * values >= having)
        return _breakdown(_field_name(key), groups, self.matched, self.top, id_like=id_like)

    def _viewed(self) -> dict[str, list[int]]:
        return _merge(((page, (n,)) for page, n in self._views.items()), _label)

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


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _field_name(key: str) -> str:
    return elide(_label(key), 40)


# ---------------------------------------------------------------------------------------------------
# Funnels


MAX_STEPS = 10
EXAMPLES = 3
OTHER = "(other)"


class FunnelStep(Schema):
    page: str = Field(description="Step pattern")
    sessions: int = Field(description="Sessions reaching it, in order")
    from_prev_pct: float | None = None
    from_start_pct: float = Field(description="Of sessions reaching step 1, %")


class FunnelGroup(Schema):
    v: str
    sessions: int
    steps: list[int] = Field(description="Sessions reaching each step")
    conversion_pct: float = Field(description="Last step / step 1, %")


class FunnelResult(Schema):
    website_id: str
    window: WindowInfo
    segment: str | None = None
    coverage: Coverage
    sessions: int = Field(description="Sessions considered")
    steps: list[FunnelStep]
    worst_step: int | None = Field(description="Step (1-based) losing the largest share of the step before")
    dropped: list[str] = Field(description="Sessions that reached the step before worst_step but not it")
    breakdown: str | None = None
    groups: list[FunnelGroup] = Field(description="Top groups by sessions reaching step 1, then (other)")


def _page_matcher(pattern: str) -> Callable[[str], bool]:
    return _Glob(pattern) if "*" in pattern else pattern.__eq__


def _keep_smallest(ids: list[str], sid: str) -> None:
    """A few example ids, the smallest seen: the same whatever order sessions arrive in."""
    if len(ids) < EXAMPLES or sid < ids[-1]:
        insort(ids, sid)
        del ids[EXAMPLES:]


class Funnel(Scan):
    """How many sessions visit `steps` in order (other pages in between allowed), streamed.

    A session reaches step k when steps 1..k match pages of its path in that order; matching each step at
    its earliest possible page is exact for such subsequence tests. One page satisfies one step."""

    def __init__(
        self,
        window: Window,
        steps: Sequence[str],
        *,
        breakdown: str | None = None,
        top: int = 5,
        segment: Segment | None = None,
    ) -> None:
        super().__init__(segment)
        if not 2 <= len(steps) <= MAX_STEPS:
            raise InputError("steps", f"give 2 to {MAX_STEPS} page patterns, in the order visitors take them.")
        try:
            for step in steps:
                _check_patterns(step)
        except ValueError as exc:
            raise InputError("steps", str(exc)) from None
        if breakdown is not None and not 0 < len(breakdown) <= 64:
            raise InputError("breakdown", "give country, device, browser, os or a field key such as utm_source.")
        self.window = window
        self.steps = list(steps)
        self.breakdown = breakdown
        self.top = _check_top(top)
        self._matchers = tuple(_page_matcher(p) for p in steps)
        self._group_of = value_of(breakdown) if breakdown else None
        self._reached = [0] * (len(steps) + 1)  # sessions by number of steps reached
        self._groups: dict[str | None, list[int]] = {}  # group value -> the same, per group
        self._dropped: list[list[str]] = [[] for _ in steps]  # [k]: reached k steps, missed step k+1

    def _consume(self, batch: list[Session]) -> None:
        matchers, last = self._matchers, len(self._matchers)
        reached, groups, group_of = self._reached, self._groups, self._group_of
        for s in batch:
            k = 0
            for page in s.pages:
                if matchers[k](page):
                    k += 1
                    if k == last:
                        break
            reached[k] += 1
            if group_of is not None:
                g = group_of(s)
                counts = groups.get(g)
                if counts is None:
                    counts = groups[g] = [0] * (last + 1)
                counts[k] += 1
            if 0 < k < last:
                _keep_smallest(self._dropped[k], s.id)

    def result(self, *, website_id: str, total: int | None, partial_reason: str | None = None) -> FunnelResult:
        self._close()
        reach = _cumulative(self._reached)
        steps = [
            FunnelStep(
                page=elide(_label(pattern), _VALUE_CHARS),
                sessions=n,
                from_prev_pct=None if i == 0 else pct(n, reach[i]),
                from_start_pct=pct(n, reach[1]),
            )
            for i, (pattern, n) in enumerate(zip(self.steps, reach[1:], strict=True))
        ]
        worst = max(
            (i for i in range(2, len(reach)) if reach[i - 1]),
            key=lambda i: (1 - reach[i] / reach[i - 1], reach[i - 1] - reach[i], -i),
            default=None,
        )
        return FunnelResult(
            website_id=website_id,
            window=WindowInfo.of(self.window),
            segment=self.segment.describe() if self.segment else None,
            coverage=self.coverage(total, partial_reason),
            sessions=reach[0],
            steps=steps,
            worst_step=worst,
            dropped=[clean(sid, 128) for sid in self._dropped[worst - 1]] if worst else [],
            breakdown=_field_name(self.breakdown) if self.breakdown else None,
            groups=self._top_groups(),
        )

    def _top_groups(self) -> list[FunnelGroup]:
        if self._group_of is None:
            return []
        merged = _merge(
            ((raw, _cumulative(counts)) for raw, counts in self._groups.items()),
            _label,
            casefold=self.breakdown in DIMENSIONS,
        )
        ranked = sorted(merged.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
        shown = ranked[: self.top]
        rest = [counts for _, counts in ranked[self.top :]]
        if rest:
            shown.append((OTHER, [sum(column) for column in zip(*rest, strict=True)]))
        return [
            FunnelGroup(v=elide(v, _VALUE_CHARS), sessions=c[0], steps=c[1:], conversion_pct=pct(c[-1], c[1]))
            for v, c in shown
        ]


def _cumulative(by_steps_reached: Sequence[int]) -> list[int]:
    """[sessions, reaching step 1, …, reaching the last step] from sessions by number of steps reached."""
    out = [0] * len(by_steps_reached)
    running = 0
    for k in range(len(by_steps_reached) - 1, -1, -1):
        running += by_steps_reached[k]
        out[k] = running
    return out


# ---------------------------------------------------------------------------------------------------
# Paths

ENTERED = "(entered here)"
EXITED = "(exited here)"


class PathResult(Schema):
    website_id: str
    window: WindowInfo
    segment: str | None = None
    coverage: Coverage
    page: str | None = Field(description="Pattern studied; null: whole paths")
    sessions: int = Field(description="Sessions considered")
    visits: int | None = Field(default=None, description="Sessions viewing the page")
    views: int | None = Field(default=None, description="Times it was viewed; previous/next count these")
    previous: Breakdown | None = None
    next: Breakdown | None = None
    flows: Breakdown | None = Field(default=None, description="Landing → exit page")
    paths: Breakdown | None = Field(default=None, description="Whole paths, long ones elided in the middle")


class PathAnalysis(Scan):
    """With `page` (a pattern): where visitors come from and go to around each view of it, counting every
    view. Without: the most common landing → exit flows and whole paths. Streamed."""

    def __init__(
        self, window: Window, page: str | None = None, *, top: int = 10, segment: Segment | None = None
    ) -> None:
        super().__init__(segment)
        if page is not None:
            try:
                _check_patterns(page)
            except ValueError as exc:
                raise InputError("page", str(exc)) from None
        self.window = window
        self.page = page
        self.top = _check_top(top)
        self._is_page = _page_matcher(page) if page is not None else None
        self._viewers = 0  # sessions viewing the page
        self._views = 0
        # With a page: page before / after each view (None: entered / exited there). Without: the flow
        # (landing, exit) and the whole path of each session (None: no pages).
        self._before: dict[Any, int] = {}
        self._after: dict[Any, int] = {}

    def _consume(self, batch: list[Session]) -> None:
        before, after, match = self._before, self._after, self._is_page
        for s in batch:
            pages = s.pages
            if match is None:
                key: Any = (pages[0], pages[-1]) if pages else None
                before[key] = before.get(key, 0) + 1
                key = tuple(pages) or None
                after[key] = after.get(key, 0) + 1
                continue
            last = len(pages) - 1
            seen = False
            for i, page in enumerate(pages):
                if match(page):
                    seen = True
                    self._views += 1
                    key = pages[i - 1] if i else None
                    before[key] = before.get(key, 0) + 1
                    key = pages[i + 1] if i < last else None
                    after[key] = after.get(key, 0) + 1
            self._viewers += seen

    def result(self, *, website_id: str, total: int | None, partial_reason: str | None = None) -> PathResult:
        self._close()
        by_page = self.page is not None
        before, after = self._before, self._after
        return PathResult(
            website_id=website_id,
            window=WindowInfo.of(self.window),
            segment=self.segment.describe() if self.segment else None,
            coverage=self.coverage(total, partial_reason),
            sessions=self.matched,
            page=elide(_label(self.page), _VALUE_CHARS) if self.page is not None else None,
            visits=self._viewers if by_page else None,
            views=self._views if by_page else None,
            previous=self._top("previous", before, _or(ENTERED), self._views) if by_page else None,
            next=self._top("next", after, _or(EXITED), self._views) if by_page else None,
            flows=None if by_page else self._top("flow", before, _flow_label, self.matched),
            paths=None if by_page else self._top("path", after, _whole_path_label, self.matched),
        )

    def _top(self, key: str, counts: dict[Any, int], label: Callable[[Any], str], whole: int) -> Breakdown:
        return _breakdown(key, _merge(((raw, (n,)) for raw, n in counts.items()), label), whole, self.top)


def _or(instead_of_none: str) -> Callable[[str | None], str]:
    return lambda page: instead_of_none if page is None else _label(page)


def _flow_label(key: tuple[str, str] | None) -> str:
    return NONE if key is None else ARROW.join(path_step(page, _STEP_CHARS) for page in key)


def _whole_path_label(key: tuple[str, ...] | None) -> str:
    return NONE if key is None else path_text(key, _STEP_CHARS)


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


class Mover(Schema):
    v: str
    now: int
    before: int
    delta: int
    share_delta: float = Field(description="Change of share of sessions, points")
    bounce_effect: float | None = Field(description="Part of the bounce-rate change, points")


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
        notes=notes,
        totals=[_change(name, now, before) for name, now, before in _total_pairs(current.totals, previous.totals)],
        breakdowns=changes(current.breakdowns[:n], previous.breakdowns[:n])
        + changes(current.breakdowns[n:], previous.breakdowns[n:]),
        pages=changes([b for b in current.pages if b.key in ("landing", "exit")], previous.pages),
    )


def _total_pairs(now: Totals, before: Totals) -> list[tuple[str, int | float | None, int | float | None]]:
    pairs: list[tuple[str, int | float | None, int | float | None]] = [
        (name, getattr(now, name), getattr(before, name)) for name in Totals.model_fields if name != "duration"
    ]
    return pairs + [
        (f"duration_{name}", getattr(now.duration, name), getattr(before.duration, name))
        for name in ("mean", "median", "p90")
    ]


def _change(name: str, now: int | float | None, before: int | float | None) -> Change:
    if now is None or before is None:
        return Change(name=name, now=now, before=before, delta=None, delta_pct=None)
    delta = now - before
    return Change(
        name=name,
        now=now,
        before=before,
        delta=round(delta, 2) if isinstance(delta, float) else delta,
        delta_pct=round(100 * delta / before, 1) if before else None,
    )


class _Known(NamedTuple):
    """What one period's breakdown tells exactly: {value: (sessions, bounces)}, and whether values it does
    not list had no sessions (nothing left in `other`) or are hidden there."""

    counts: dict[str, tuple[int, int]]
    complete: bool

    def get(self, value: str) -> tuple[int, int] | None:
        found = self.counts.get(value)
        return found if found is not None else (0, 0) if self.complete else None


def _known(b: Breakdown | None, key: str, summary: Summary) -> _Known:
    if b is None:  # a field key not broken down: beyond the cap, or no session had it (all `(none)`)
        if key in summary.other_fields:
            return _Known({}, complete=False)
        return _Known({NONE: (summary.totals.sessions, summary.totals.bounces)}, complete=True)
    return _Known({e.v: (e.n, e.bounces or 0) for e in b.top}, complete=b.other == 0)


def _breakdown_change(b: Breakdown, old: _Known, current: Summary, previous: Summary, movers: int) -> BreakdownChange:
    now_sessions, old_sessions = current.totals.sessions, previous.totals.sessions
    new = _known(b, b.key, current)
    rows = []
    for value in new.counts.keys() | old.counts.keys():
        now, before = new.get(value), old.get(value)
        if now is None or before is None:
            continue  # hidden in `other` on one side: no exact change to report
        effect = _share(now[1], now_sessions) - _share(before[1], old_sessions)
        rows.append(
            Mover(
                v=value,
                now=now[0],
                before=before[0],
                delta=now[0] - before[0],
                share_delta=round(_share(now[0], now_sessions) - _share(before[0], old_sessions), 1),
                bounce_effect=round(effect, 1),
            )
        )
    by_sessions = sorted((m for m in rows if m.delta), key=lambda m: (-abs(m.delta), -abs(m.share_delta), m.v))
    by_bounce = sorted((m for m in rows if m.bounce_effect), key=lambda m: (-abs(m.bounce_effect or 0), m.v))
    return BreakdownChange(key=b.key, movers=by_sessions[:movers], bounce_drivers=by_bounce[:movers])


def _share(part: int, whole: int) -> float:
    """Unrounded percentage: differences of shares are taken before rounding."""
    return 100 * part / whole if whole else 0.0
