"""Segments: which sessions a scan keeps."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputError
from ..privacy import redact
from ..sanitize import clean, elide
from .schema import DIMENSIONS, NONE, Schema, _field_name, _label, _without_titles, fmt_duration

if TYPE_CHECKING:
    import polars as pl

# ---------------------------------------------------------------------------------------------------
# Segments: which sessions a scan keeps.

MAX_PATTERN_CHARS = 200
MAX_WILDCARDS = 10
MAX_SEGMENT_VALUES = 50  # per list, and field keys
MAX_VALUE_CHARS = 500  # a value, a field key, or any other text given
_NAMED_UNKNOWN = 3  # unknown criteria an error names

Values = str | list[str]


def _as_list(value: Values) -> list[str]:
    return [value] if isinstance(value, str) else value


def _check_values(value: Values) -> Values:
    values = _as_list(value)
    if not 1 <= len(values) <= MAX_SEGMENT_VALUES:
        raise ValueError(f"give 1 to {MAX_SEGMENT_VALUES} values")
    if any(len(v) > MAX_VALUE_CHARS for v in values):
        raise ValueError(f"a value is longer than {MAX_VALUE_CHARS} characters")
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


def _given(value: str) -> tuple[str, ...]:
    """A value as given and as PII redaction masks it: the data a segment is matched against is redacted
    (HARDAL_REDACT_PII), so `/reset?email=ann@example.com` is found as `/reset?email=[email]`."""
    masked = redact(value)
    return (value,) if masked == value else (value, masked)


def _wanted(values: Values, fold: bool) -> frozenset[str | None]:
    """What a session's value must be, exactly (case-folded with `fold`); None stands for missing."""
    out: set[str | None] = set()
    for v in _as_list(values):
        if not v or v.casefold() == _NONE_FOLDED:
            out.add(None)
        else:
            out.update(x.casefold() if fold else x for x in _given(v))
    return frozenset(out)


def _patterns(values: Values) -> _Pages:
    return _Pages(p for pattern in _as_list(values) for p in _given(pattern))


_NONE_FOLDED = NONE.casefold()


class Segment(Schema):
    """Which sessions to keep; every criterion given must hold. Values match exactly, except that country,
    device, browser and os ignore case (upstream spells them inconsistently); `(none)` matches a missing
    value. Page patterns match whole pages as listed (query string included); `*` is any run of
    characters. A value or pattern is also matched as PII redaction masks it, as the data is masked."""

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
        if value is not None:
            if not 1 <= len(value) <= MAX_SEGMENT_VALUES:
                raise ValueError(f"give 1 to {MAX_SEGMENT_VALUES} field keys")
            if any(not 0 < len(key) <= MAX_VALUE_CHARS for key in value):
                raise ValueError(f"a field key is empty or longer than {MAX_VALUE_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _check_range(self) -> Segment:
        if self.min_duration is not None and self.max_duration is not None and self.min_duration > self.max_duration:
            raise ValueError("min_duration is above max_duration")
        return self

    @classmethod
    def parse(cls, value: Segment | Mapping[str, Any] | None) -> Segment | None:
        """A segment from a tool argument; any problem is an InputError naming the criterion. Its size is
        checked before anything is validated, so a hostile segment costs little time or memory."""
        if value is None or isinstance(value, Segment):
            return value
        if not isinstance(value, Mapping):
            raise InputError("segment", f"give an object of criteria such as {{'country': 'Turkey'}}; {_ALLOWED}.")
        _check_size(value)
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
            where = f"segment.{error['loc'][0]}" if error["loc"] else "segment"
            raise InputError(where, error["msg"].removeprefix("Value error, ")) from None

    def keep(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of `frame` that meet every criterion but `returning`, which the scan decides (see
        `Scan`). Each criterion is decided in Python on the frame's distinct values, then applied to the
        rows as a filter on exact spellings."""
        import polars as pl

        conditions: list[pl.Expr] = []
        for name in DIMENSIONS:
            wanted = getattr(self, name)
            if wanted is not None:
                conditions.append(_among(frame.get_column(name), _wanted(wanted, fold=True), fold=True))
        for key, wanted in (self.fields or {}).items():
            values = frame.select(field_expr(key)).to_series()
            conditions.append(_among(values, _wanted(wanted, fold=False), fold=False))
        pages = pl.col("pages")
        if any(x is not None for x in (self.visited, self.not_visited, self.landing_page, self.exit_page)):
            distinct = frame.get_column("pages").explode().drop_nulls().unique().to_list()

            def matching(patterns: _Pages) -> list[str]:
                return [page for page in distinct if patterns.match(page)]

            if self.visited is not None:
                for pattern in _as_list(self.visited):  # every pattern, as given or as redacted, some page
                    found = matching(_patterns(pattern))
                    conditions.append(pages.list.eval(pl.element().is_in(found)).list.any())
            if self.not_visited is not None:
                found = matching(_patterns(self.not_visited))
                conditions.append(~pages.list.eval(pl.element().is_in(found)).list.any())
            if self.landing_page is not None:
                conditions.append(pages.list.first().is_in(matching(_patterns(self.landing_page))).fill_null(False))
            if self.exit_page is not None:
                conditions.append(pages.list.last().is_in(matching(_patterns(self.exit_page))).fill_null(False))
        if self.min_duration is not None or self.max_duration is not None:
            low, high = self.min_duration or 0.0, math.inf if self.max_duration is None else self.max_duration
            conditions.append(pl.col("duration").is_between(low, high).fill_null(False))
        if self.min_pageviews is not None:
            conditions.append(page_views_expr() >= self.min_pageviews)
        if self.bounced is not None:
            conditions.append((page_views_expr() <= 1) == self.bounced)
        return frame.filter(*conditions) if conditions else frame

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


def page_views_expr() -> pl.Expr:
    """A session's page views: `page_views`, or the length of `pages` when upstream omits the count."""
    import polars as pl

    return pl.coalesce(pl.col("page_views"), pl.col("pages").list.len().cast(pl.Int64))


def field_expr(key: str) -> pl.Expr:
    """A field's value: the key is looked up as given, then as PII redaction masks it (keys are redacted too)."""
    import polars as pl

    def one(k: str) -> pl.Expr:
        item = pl.element()
        return pl.col("fields").list.eval(item.filter(item.struct.field("key") == k).struct.field("value")).list.first()

    keys = _given(key)
    return (one(keys[0]) if len(keys) == 1 else pl.coalesce(*map(one, keys))).alias(key)



def _among(values: pl.Series, wanted: frozenset[str | None], fold: bool) -> pl.Expr:
    """Rows whose value (a column, or the series computed for each row) is wanted, decided per distinct value."""
    import polars as pl

    ok = [v for v in values.drop_nulls().unique().to_list() if ((v.casefold() if fold else v) if v else None) in wanted]
    hit = values.is_in(ok)
    if None in wanted:
        hit = hit | values.is_null()
    return pl.lit(hit.fill_null(False))


def value_expr(name: str) -> pl.Expr:
    """A session's country, device, browser or os; any other name is a `fields` key."""
    import polars as pl

    return pl.col(name) if name in DIMENSIONS else field_expr(name)


# ---------------------------------------------------------------------------------------------------
# The size of a segment, checked before validation: pydantic would build (and keep) an error for every
# unknown key or bad item, so a few MB of them would cost hundreds of MB.

_LISTS = ("country", "device", "browser", "os", "visited", "not_visited", "landing_page", "exit_page")
_ALLOWED = "allowed: " + ", ".join(Segment.model_fields)


def _check_size(value: Mapping[Any, Any]) -> None:
    allowed = Segment.model_fields
    if len(value) > len(allowed) or not allowed.keys() >= value.keys():
        unknown = list(islice((k for k in value if k not in allowed), _NAMED_UNKNOWN))
        count = sum(1 for k in value if k not in allowed)
        named = ", ".join(_quoted(k) for k in unknown[:_NAMED_UNKNOWN])
        more = f" (+{count - _NAMED_UNKNOWN:,} more)" if count > _NAMED_UNKNOWN else ""
        where = f"segment.{_short(unknown[0])}" if count == 1 else "segment"
        raise InputError(where, f"unknown criteri{'on' if count == 1 else 'a'} {named}{more}; {_ALLOWED}.")
    for name in _LISTS:
        _check_list(f"segment.{name}", value.get(name))
    fields = value.get("fields")
    if isinstance(fields, Mapping):
        if len(fields) > MAX_SEGMENT_VALUES:
            raise InputError("segment.fields", f"give 1 to {MAX_SEGMENT_VALUES} field keys; got {len(fields):,}.")
        for key, values in fields.items():
            if isinstance(key, str) and len(key) > MAX_VALUE_CHARS:
                raise InputError("segment.fields", f"a field key is longer than {MAX_VALUE_CHARS} characters.")
            _check_list("segment.fields", values)
    for name in ("min_duration", "max_duration", "min_pageviews", "bounced", "returning"):
        item = value.get(name)
        if isinstance(item, str) and len(item) > MAX_VALUE_CHARS:
            raise InputError(f"segment.{name}", f"longer than {MAX_VALUE_CHARS} characters.")


def _check_list(where: str, value: Any) -> None:
    """A list of at most MAX_SEGMENT_VALUES short items; what the items are is pydantic's to check."""
    if isinstance(value, str):
        items: Sequence[Any] = (value,)
    elif isinstance(value, Sequence):
        items = value
        if len(items) > MAX_SEGMENT_VALUES:
            raise InputError(where, f"give 1 to {MAX_SEGMENT_VALUES} values; got {len(items):,}.")
    else:
        return
    if any(isinstance(item, str) and len(item) > MAX_VALUE_CHARS for item in items):
        raise InputError(where, f"a value is longer than {MAX_VALUE_CHARS} characters.")


def _short(key: Any) -> str:
    return elide(clean(str(key), 200), 40)


def _quoted(key: Any) -> str:
    return json.dumps(_short(key), ensure_ascii=False)
