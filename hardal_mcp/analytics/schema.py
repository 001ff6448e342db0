"""Result models: the MCP tool's output schema, so names are short and descriptions few; and the constants and
small helpers every analysis shares."""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any, Literal, Protocol, cast
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import TzInfo

from ..errors import InputError
from ..numbers import pct as exact_pct
from ..numbers import rounded_int
from ..params import Window
from ..results import WindowInfo
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
    bounce_moe: float | None = Field(default=None, description="Estimated: ± pts of bounce_pct, 95%")


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
    moe: list[float | None] | None = Field(
        default=None, description="Estimated: ± of each count, 95% (null where exact or shared out evenly)"
    )


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


def pct(part: int, whole: int) -> float:
    """A percentage with one decimal, rounded once, half up, from the exact counts."""
    return exact_pct(part, whole)


def fmt_duration(seconds: float) -> str:
    """`45s`, `3m05s`, `1h02m05s`: compact and unambiguous."""
    s = rounded_int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


class Ordered(Protocol):
    """Ascending numbers that can be indexed: a list, or a sorted column (only two values are read)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> Any: ...


def quantile(ordered: Ordered, q: float) -> float | None:
    """Linear interpolation between closest ranks of an ascending sequence."""
    if not len(ordered):
        return None
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    low, high = float(ordered[lo]), float(ordered[hi])
    return low + (h - lo) * (high - low)


def _label(value: str | None) -> str:
    text = clean(value, _FULL) if value else ""
    return text or NONE


# ---------------------------------------------------------------------------------------------------
# Groups: counted on the exact value, shown cleaned.
#
# A group's identity is the exact value (case-folded for the enumerations, which upstream spells
# inconsistently); only its label, made once per distinct value at the end, is cleaned and elided. Two
# values that would show alike get a short, stable hash suffix each instead of being merged. The
# identities are what a `Record` keys counts by, so they are the same on every page of a read.

OTHER = "(other)"
ENTERED = "(entered here)"
EXITED = "(exited here)"
_MARKERS = frozenset((NONE, OTHER, ENTERED, EXITED))  # identities of no value: shown as they are
_ESCAPE = "\x00"  # prefixed to a value spelled like a marker, so that it never merges with one
_HASH_WIDTH = 4  # hex digits of a label's hash suffix, more only where 4 do not tell values apart


def identity(value: str | None, *, fold: bool = False, missing: str = NONE) -> str:
    """A value's group: itself (case-folded with `fold`); `missing` for None, NONE for "" (empty reads as
    missing). A value spelled like a marker, or starting with NUL, is prefixed with NUL: never merged."""
    if value is None:
        return missing
    if not value:
        return NONE
    if fold:
        value = value.casefold()
    return _ESCAPE + value if value in _MARKERS or value[0] == _ESCAPE else value


def value_text(ident: str) -> str:
    """The label text (cleaned, not elided) of an identity made by `identity` without `fold`."""
    return ident if ident in _MARKERS else _label(value_exact(ident))


def value_exact(ident: str) -> str:
    """The value an identity made by `identity` without `fold` stands for."""
    return ident[1:] if ident[0] == _ESCAPE else ident


def value_plain(ident: str, text: str) -> bool:
    """Whether `text` shows the value of `ident` (made without `fold`) as it is."""
    return text == value_exact(ident)


def sequence_identity(pages: tuple[str | None, ...] | None) -> str:
    """The identity of a path or flow: the repr of its exact pages (never a marker); NONE when empty."""
    return repr(pages) if pages else NONE


def _grouped(
    items: Iterable[tuple[Any, Sequence[int]]], ident: Callable[[Any], str]
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Count vectors summed by identity, and each identity's raw value: for values that fold together,
    the spelling with the largest first count (ties: the smallest)."""
    groups: dict[str, list[int]] = {}
    spelled: dict[str, Any] = {}
    folded: dict[str, list[tuple[int, Any]]] = {}  # identity -> (count, raw) of each value folded into it
    for raw, counts in items:
        key = ident(raw)
        group = groups.get(key)
        if group is None:
            groups[key] = list(counts)
            spelled[key] = raw
            continue
        spellings = folded.get(key)
        if spellings is None:
            spellings = folded[key] = [(group[0], spelled[key])]
        spellings.append((counts[0], raw))
        groups[key] = [a + b for a, b in zip(group, counts, strict=True)]
    for key, spellings in folded.items():
        named = [(-n, raw) for n, raw in spellings if isinstance(raw, str)]
        if named:
            spelled[key] = min(named)[1]
    return groups, spelled


def _spelled(spelled: Mapping[str, Any]) -> Callable[[str, str], bool]:
    """Whether a label text shows its identity's raw value (see `_grouped`) as it is."""
    return lambda ident, text: text == spelled.get(ident)


def _suffix(ident: str, width: int) -> str:
    return " #" + hashlib.blake2b(ident.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()[:width]


def labels(
    idents: Iterable[str], text: Callable[[str], str], plain: Callable[[str, str], bool], limit: int = _VALUE_CHARS
) -> dict[str, str]:
    """Each identity's label: `text` elided to `limit`, and told apart from every other by a hash suffix
    of its identity where it could be mistaken for another value:

    * always where cleaning changed the text (`plain(identity, text)` is false): shown plainly, `Turkey`
      is the value `Turkey`, which a segment typed from the label matches;
    * always where a value reads as a marker such as `(none)`, which keeps its plain label;
    * where labels would still be the same (two long values elided alike), the one label that is its
      whole value, if any, stays as it is.

    The suffix grows past 4 hex digits only where 4 do not tell values apart."""
    full: dict[str, str] = {}
    shown: dict[str, str] = {}
    tagged: dict[str, None] = {}  # an ordered set
    by_label: dict[str, list[str]] = {}
    for i in idents:
        t = full[i] = text(i)
        label = shown[i] = elide(t, limit) if len(t) > limit else t
        same = by_label.get(label)
        if same is None:
            by_label[label] = [i]
        else:
            same.append(i)
        if i not in _MARKERS and (t in _MARKERS or not plain(i, t)):
            tagged[i] = None
    for label, same in by_label.items():
        if len(same) > 1:
            keep = [i for i in same if i in _MARKERS] or [i for i in same if full[i] == label and i not in tagged]
            tagged.update(dict.fromkeys(i for i in same if len(keep) != 1 or i != keep[0]))
    width = _HASH_WIDTH
    while tagged and width <= 32:
        for i in tagged:
            tag = _suffix(i, width)
            shown[i] = elide(full[i], max(1, limit - len(tag))) + tag
        count: dict[str, int] = {}
        for label in shown.values():
            count[label] = count.get(label, 0) + 1
        tagged = {i: None for i in tagged if count[shown[i]] > 1}
        width += 4
    return shown


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


def sequence_plain(pages: Sequence[str | None], text: str) -> bool:
    """Whether a path or flow labelled `text` shows every page as it is, but for elision (see `labels`)."""
    if None not in pages and text == ARROW.join(cast("Sequence[str]", pages)):
        return True  # the common case, at C speed: no page cleaned, elided or holding an arrow
    return all(page is None or (clean(page, _FULL) == page and "→" not in page) for page in pages)


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

    def grouped(self, ident: Callable[[Any], str]) -> tuple[dict[str, list[int]], dict[str, Any]]:
        """{identity: [sessions, bounces]} and each identity's raw value (see `_grouped`)."""
        bounced, stayed = self.bounced, self.stayed
        return _grouped(
            ((raw, (bounced.get(raw, 0) + stayed.get(raw, 0), bounced.get(raw, 0))) for raw in bounced.keys() | stayed),
            ident,
        )


class Recorder(Protocol):
    """What a breakdown hands every group to, for estimates (`estimate.Record`; defined there, so that this
    module, which `estimate` builds on, does not depend on it)."""

    def breakdown(
        self, key: str, groups: Mapping[str, Sequence[float]], whole: float, shown: Sequence[str]
    ) -> None: ...


def _breakdown(
    key: str,
    groups: Mapping[str, Sequence[int]],
    whole: int,
    top: int,
    id_like: bool = False,
    record: Recorder | None = None,
    text: Callable[[str], str] = value_text,
    plain: Callable[[str, str], bool] = value_plain,
) -> Breakdown:
    """Top `top` groups by count (ties by label); `other` holds the rest, so counts always add up. `groups`
    is keyed by identity; `text` and `plain` make labels (see `labels`). With `record`, every group is
    handed to it too (estimates need the values a page alone would not show), keyed by identity, and the
    shown ones in order."""
    if id_like:
        shown = [(NONE, groups[NONE])] if NONE in groups else []
        shown_as = {NONE: NONE}
    else:
        shown_as = labels(groups, text, plain)
        shown = heapq.nsmallest(top, groups.items(), key=lambda item: (-item[1][0], shown_as[item[0]], item[0]))
    if record is not None:
        record.breakdown(key, groups, whole, [i for i, _ in shown])
    entries = [
        Entry(v=shown_as[i], n=c[0], pct=pct(c[0], whole))
        if len(c) == 1
        else Entry(v=shown_as[i], n=c[0], pct=pct(c[0], whole), bounces=c[1], bounce_pct=pct(c[1], c[0]))
        for i, c in shown
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


_KEY_CHARS = 40  # a field key as shown
_RESERVED_NAMES = (*DIMENSIONS, "landing", "exit", "viewed", "path")  # lists a summary has of its own


def _field_name(key: str) -> str:
    return elide(_label(key), _KEY_CHARS)


def field_names(keys: Iterable[str]) -> dict[str, str]:
    """Each field key's name as shown: cleaned and elided, and told apart (see `labels`) from the other
    keys' and from the names of a summary's own lists, which share a `Record` with them."""
    keys = list(keys)
    names = labels(
        [*("r" + name for name in _RESERVED_NAMES), *("k" + key for key in keys)],
        lambda i: i[1:] if i[0] == "r" else _label(i[1:]),
        lambda i, text: text == i[1:] and len(text) <= _KEY_CHARS,  # an elided key is marked too: a name
        _KEY_CHARS,  # keys a `Record`, so it must not depend on which other keys a page happens to have
    )
    return {key: names["k" + key] for key in keys}
