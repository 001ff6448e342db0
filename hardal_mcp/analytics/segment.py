"""Segments: which sessions a scan keeps."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputError
from ..models import Session
from ..sanitize import elide
from .schema import DIMENSIONS, NONE, Schema, _field_name, _label, _without_titles, fmt_duration

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
