"""Result models: the MCP tool's output schema, so names are short and descriptions few; and the constants and
small helpers every analysis shares."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import TzInfo

from ..errors import InputError
from ..params import Window
from ..results import WindowInfo

if TYPE_CHECKING:
    from .estimate import Record
from ..sanitize import clean, elide

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
    moe: float | None = Field(default=None, description="Estimated: ± pts of pct, 95%")


class Breakdown(Schema):
    key: str
    distinct: int | None = Field(description="Distinct values, (none) included; null when estimated")
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
    visitors: int | None = Field(description="Distinct visitor ids; null when estimated")
    returning: int | None = Field(description="Visitors with ≥2 sessions in the window")
    returning_pct: float | None = Field(description="returning / visitors, %")
    page_views: int
    events: int
    bounces: int = Field(description="Sessions with ≤1 page view")
    bounce_pct: float
    pages_per_session: float
    duration: Durations
    moe: dict[str, float] | None = Field(default=None, description="Estimated: 95% margins by figure")


class Series(Schema):
    unit: Literal["day", "hour"]
    start: str = Field(description="Local start of counts[0]")
    counts: list[int] = Field(description="Sessions started in each consecutive unit")
    no_start: int = Field(description="Sessions without a start time")
    outside: int = Field(description="Sessions starting outside the window")
    estimated: bool = Field(default=False, description="Counts scaled from a sample")


class Example(Schema):
    id: str
    why: str


class Sample(Schema):
    read: int = Field(description="Sessions read")
    of: int = Field(description="Sessions in the window, exact")
    days: int = Field(description="Days with pages read")
    moe: float | None = Field(description="Largest margin of a share shown, ± pts, 95%")


class Coverage(Schema):
    scanned: int = Field(description="Unique sessions read")
    matched: int | None = Field(default=None, description="Of those, sessions in the segment")
    duplicates: int = Field(description="Repeats skipped while paging")
    unreadable: int = Field(default=0, description="Items Hardal sent that were not readable sessions; not counted")
    total: int | None = Field(description="Sessions Hardal reported")
    complete: bool
    note: str | None = None
    sample: Sample | None = Field(default=None, description="Set when figures are estimated from a sample")


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


def _breakdown(
    key: str,
    groups: Mapping[str, Sequence[int]],
    whole: int,
    top: int,
    id_like: bool = False,
    record: Record | None = None,
) -> Breakdown:
    """Top `top` groups by count (ties by value); `other` holds the rest, so counts always add up. With
    `record`, every group is handed to it too (estimates need the values a page alone would not show)."""
    if id_like:
        shown = [(NONE, groups[NONE])] if NONE in groups else []
    else:
        shown = sorted(groups.items(), key=lambda item: (-item[1][0], item[0]))[:top]
    if record is not None:
        record.breakdown(key, groups, whole, [v for v, _ in shown])
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


def _field_name(key: str) -> str:
    return elide(_label(key), 40)
