"""Sessions as columns: a page of the API, a stored day and every analysis share one Polars frame shape.

A page's JSON is read by Polars straight into columns when it has the documented shape (reference §2.1),
which is what Hardal sends; anything else (snake_case keys, numbers as strings, an envelope, …) takes the
tolerant per-item read of `models` and is then put into the same columns, so both ways agree value for
value. Values are transformed on their distinct values (a country, a page, a UTM value repeat thousands of
times): redaction, secret scrubbing and the tolerant duration parser run once per distinct string.

The columns (`SCHEMA`):
- `id`, `visitor_id`: text; `id` is never null or empty (an item without one is counted as unreadable);
- `started`: the start instant in UTC (microseconds); `offset`: its UTC offset in seconds as sent, null for
  a start sent without an offset, whose `started` then holds the wall-clock time (read in the window's
  zone by the analyses, as before);
- `duration` (seconds), `page_views`, `events`: null when unknown;
- `pages`: the pages in order; `browser`, `os`, `device`, `country`: text or null;
- `fields`: the session's custom fields in order, as `{key, value}` pairs with text values.

Polars is imported when first needed, not with the package: a server's cold start does not pay for it."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import TYPE_CHECKING, Any

from .models import Pagination, Session, _lenient, parse_duration, parse_session_items
from .sanitize import redact_secret

if TYPE_CHECKING:
    import polars as pl

COLUMNS = (
    "id", "visitor_id", "started", "offset", "duration", "page_views", "events", "pages",
    "browser", "os", "device", "country", "fields",
)  # fmt: skip
_TEXT = ("browser", "os", "device", "country")
_INT64 = (-(1 << 63), (1 << 63) - 1)


@cache
def schema() -> pl.Schema:
    import polars as pl

    text = pl.String()
    columns: dict[str, pl.DataType] = {
        "id": text,
        "visitor_id": text,
        "started": pl.Datetime("us", "UTC"),
        "offset": pl.Int32(),
        "duration": pl.Float64(),
        "page_views": pl.Int64(),
        "events": pl.Int64(),
        "pages": pl.List(text),
        "browser": text,
        "os": text,
        "device": text,
        "country": text,
        "fields": pl.List(pl.Struct({"key": text, "value": text})),
    }
    return pl.Schema(columns)


def empty() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema=schema())


@dataclass(slots=True, eq=False)
class SessionsPage:
    """One page of `GET /sessions`: its sessions as a frame, and what else it said."""

    frame: pl.DataFrame
    pagination: Pagination | None = None
    dropped: int = 0  # items of the page that could not be read as sessions
    _rows: list[Session] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.frame.height

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionsPage):
            return NotImplemented
        same = (self.pagination, self.dropped) == (other.pagination, other.dropped)
        return same and self.frame.equals(other.frame)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    @property
    def sessions(self) -> list[Session]:
        """The sessions as objects, for the few readers that show rows (built once, on demand)."""
        if self._rows is None:
            self._rows = to_sessions(self.frame)
        return self._rows

    def replace(self, frame: pl.DataFrame) -> None:
        self.frame, self._rows = frame, None


# ------------------------------------------------------------------------------------------ reading JSON


def parse_sessions_page(content: bytes) -> SessionsPage:
    """Read a sessions page; raise ProtocolError when the body is not a sessions page at all."""
    fast = _documented_page(content)
    if fast is not None:
        return fast
    page = parse_session_items(content)
    return SessionsPage(from_sessions(page.sessions), page.pagination, page.dropped)


def scrub_secret(page: SessionsPage, secret: str, mask: str = "[key]") -> None:
    """Replace `secret` (the API key) in every text of the page, in place. Only called for a body that
    mentions it (`models.mentions`): Hardal echoing a key must not put it in front of a model."""
    page.replace(map_text(page.frame, lambda value: redact_secret(value, secret, mask)))


# The documented keys and the types Polars infers for them when every item has the documented shape
# (a key whose values are all null is inferred as Null).
_DOCUMENTED = {
    "id": ("String",),
    "visitorId": ("String", "Null"),
    "startedAt": ("String", "Null"),
    "duration": ("String", "Int64", "Float64", "Null"),
    "pageViews": ("Int64", "Null"),
    "events": ("Int64", "Null"),
    "browser": ("String", "Null"),
    "os": ("String", "Null"),
    "device": ("String", "Null"),
    "country": ("String", "Null"),
}
# Spellings the tolerant read accepts for documented keys: a page using them is read that way.
_ALIASES = frozenset({"visitor_id", "started_at", "pageviews", "page_views"})
_PAGE_KEYS = frozenset({"sessions", "pagination"})
# A documented key whose value is of another JSON type than documented: Polars would coerce it (a string
# into a list of one page, a boolean into text) where the tolerant read drops it. (A match inside a string
# value is impossible, its quotes are escaped; a field named so only sends the page the tolerant way.)
_COERCED = re.compile(
    rb'"(?:pages"\s*:\s*[^\s\[n]|fields"\s*:\s*[^\s{n]|(?:id|visitorId|startedAt|browser|os|device|country)"\s*:\s*[^\s"n])'
)


def _documented_page(content: bytes) -> SessionsPage | None:
    """The page read by Polars, or None when it is not exactly the documented shape (read tolerantly)."""
    import polars as pl

    if not content.lstrip().startswith(b"{") or _COERCED.search(content):
        return None  # a bare array, not JSON, or a value Polars would coerce: the tolerant read judges
    try:
        raw = pl.read_json(io.BytesIO(content), infer_schema_length=None)
    except Exception:
        return None
    if raw.height != 1 or not set(raw.columns) <= _PAGE_KEYS or "sessions" not in raw.columns:
        return None
    pagination = None
    if "pagination" in raw.columns:
        value = raw.get_column("pagination")[0]
        pagination = _lenient(Pagination, value)
    items = raw.get_column("sessions")
    if items.dtype == pl.List(pl.Null):  # no items, or only nulls (not sessions)
        return SessionsPage(empty(), pagination, dropped=items.list.len()[0] or 0)
    inner = items.dtype.inner if isinstance(items.dtype, pl.List) else None
    if not isinstance(inner, pl.Struct):
        return None
    types = {f.name: f.dtype for f in inner.fields}
    if "id" not in types or types.keys() & _ALIASES:
        return None
    for name, allowed in _DOCUMENTED.items():
        if name in types and str(types[name]) not in allowed:
            return None
    pages_type, fields_type = types.get("pages"), types.get("fields")
    if pages_type is not None and pages_type not in (pl.List(pl.String), pl.List(pl.Null), pl.Null):
        return None
    if fields_type is not None and fields_type != pl.Null:
        if not isinstance(fields_type, pl.Struct):
            return None
        if any(f.dtype not in (pl.String, pl.Null) for f in fields_type.fields):
            return None
    rows = raw.select(pl.col("sessions").explode())
    if rows.get_column("sessions").null_count():
        return None  # an item that is not an object
    rows = rows.unnest("sessions")
    return _columns(rows, types, pagination)


def _columns(rows: pl.DataFrame, types: dict[str, Any], pagination: Pagination | None) -> SessionsPage | None:
    import polars as pl

    def column(name: str, dtype: Any) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in types else pl.lit(None, dtype)

    readable = pl.col("id").is_not_null() & (pl.col("id") != "")
    total = rows.height
    rows = rows.filter(readable)
    kv = pl.Struct({"key": pl.String, "value": pl.String})
    frame = rows.select(
        pl.col("id"),
        column("visitorId", pl.String).alias("visitor_id"),
        column("startedAt", pl.String).alias("started_text"),
        column("duration", pl.String if types.get("duration") == pl.String else pl.Float64).alias("duration"),
        column("pageViews", pl.Int64).alias("page_views"),
        column("events", pl.Int64).alias("events"),
        column("pages", pl.List(pl.String)).list.drop_nulls().fill_null([]).alias("pages"),
        *(column(name, pl.String).alias(name) for name in _TEXT),
    )
    fields_type = types.get("fields")
    if isinstance(fields_type, pl.Struct) and fields_type.fields and rows.height:
        # One row per (session, key) with a value, then back to a list per session, in the page's key order.
        at = pl.int_range(pl.len(), dtype=pl.UInt32).alias("at")
        pairs = (
            rows.select(at, pl.col("fields").cast(pl.Struct({f.name: pl.String for f in fields_type.fields})))
            .unnest("fields")
            .unpivot(index="at", variable_name="key", value_name="value")
            .drop_nulls("value")
            .group_by("at")
            .agg(pl.struct("key", "value").alias("fields"))
        )
        every = pl.DataFrame({"at": pl.int_range(rows.height, dtype=pl.UInt32, eager=True)})
        lists = every.join(pairs, on="at", how="left", maintain_order="left").get_column("fields")
        frame = frame.with_columns(lists.fill_null([]).cast(pl.List(kv)).alias("fields"))
    else:
        frame = frame.with_columns(pl.lit([], pl.List(kv)).alias("fields"))
    if frame.get_column("duration").dtype == pl.String:
        frame = frame.with_columns(_mapped(frame.get_column("duration"), parse_duration, pl.Float64))
    else:  # a number of seconds: negative and non-finite ones are unknown, as `parse_duration` reads them
        d = pl.col("duration")
        frame = frame.with_columns(pl.when(d.is_finite() & (d >= 0)).then(d).alias("duration"))
    started = _starts(frame)
    if started is None:
        return None
    return SessionsPage(started.select(COLUMNS), pagination, dropped=total - started.height)


_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")


def _starts(frame: pl.DataFrame) -> pl.DataFrame | None:
    """`started_text` as `started` and `offset`; None when a start is not plain ISO 8601 with an offset
    (the tolerant read parses those with Python's `datetime.fromisoformat`, and a bad one is dropped)."""
    import polars as pl

    text = pl.col("started_text")
    plain = text.str.contains(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
    if not frame.select((plain | text.is_null()).all()).item():
        return None
    tail = text.str.slice(-6)
    sign = pl.when(tail.str.slice(0, 1) == "-").then(-1).otherwise(1)
    offset = pl.when(text.str.ends_with("Z")).then(0).otherwise(
        sign * (tail.str.slice(1, 2).cast(pl.Int32) * 3600 + tail.str.slice(4, 2).cast(pl.Int32) * 60)
    )
    started = text.str.replace(r"Z$", "+00:00").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC", strict=False
    )
    out = frame.with_columns(started.alias("started"), offset.cast(pl.Int32).alias("offset"))
    if out.get_column("started").null_count() != frame.get_column("started_text").null_count():
        return None  # a date Polars refused (say, 24:00:00): Python's reading decides
    return out


def _mapped(series: pl.Series, fn: Callable[[Any], Any], dtype: Any) -> pl.Series:
    """`fn` of each value, computed once per distinct value."""
    import polars as pl

    distinct = series.drop_nulls().unique()
    table = {v: fn(v) for v in distinct.to_list()}
    return series.replace_strict(table, default=None, return_dtype=dtype) if table else pl.Series(
        series.name, [None] * series.len(), dtype
    )


# ---------------------------------------------------------------------------------------------- objects


def from_sessions(sessions: Sequence[Session]) -> pl.DataFrame:
    """Sessions (from the tolerant read, or a test) as columns."""
    import polars as pl

    starts = [s.started_at for s in sessions]
    data = {
        "id": [s.id for s in sessions],
        "visitor_id": [s.visitor_id for s in sessions],
        "started": [_utc(t) for t in starts],
        "offset": [_offset(t) for t in starts],
        "duration": [s.duration for s in sessions],
        "page_views": [_int64(s.page_views) for s in sessions],
        "events": [_int64(s.events) for s in sessions],
        "pages": [s.pages for s in sessions],
        "browser": [s.browser for s in sessions],
        "os": [s.os for s in sessions],
        "device": [s.device for s in sessions],
        "country": [s.country for s in sessions],
        "fields": [[{"key": k, "value": v} for k, v in s.fields.items()] for s in sessions],
    }
    try:
        return pl.DataFrame(data, schema=schema())
    except UnicodeEncodeError:  # a lone surrogate (JSON can escape one): columns hold UTF-8 only
        return pl.DataFrame(_mend(data), schema=schema())


def _mend(value: Any) -> Any:
    """Every string in `value` as valid Unicode, a lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {k: _mend(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mend(v) for v in value]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_sessions(frame: pl.DataFrame) -> list[Session]:
    """The frame's rows as `Session` objects (for rows shown one by one)."""
    out = []
    for row in frame.select(COLUMNS).iter_rows():
        sid, visitor, started, offset, duration, views, events, pages, browser, os, device, country, fields = row
        if started is not None:
            started = (
                started.replace(tzinfo=None)
                if offset is None
                else started.astimezone(timezone(timedelta(seconds=offset)))
            )
        kv = {f["key"]: f["value"] for f in fields}
        out.append(Session(sid, visitor, started, duration, views, events, pages, browser, os, device, country, kv))
    return out


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    if at.tzinfo is None:  # the wall-clock time, kept as it is (see `started`)
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def _offset(at: datetime | None) -> int | None:
    if at is None or at.tzinfo is None:
        return None
    offset = at.utcoffset()
    return None if offset is None else int(offset.total_seconds())


def _int64(value: int | None) -> int | None:
    """A count beyond 64 bits is not a count anyone sent on purpose: unknown."""
    return value if value is None or _INT64[0] <= value <= _INT64[1] else None


# ---------------------------------------------------------------------------------------- transforming


def map_text(frame: pl.DataFrame, fn: Callable[[str], str], plain_ids: str | None = None) -> pl.DataFrame:
    """Every text of the frame through `fn`, field keys included; each distinct value is transformed once,
    and a column nothing changes in is kept as it is. Ids matching the regex `plain_ids` are left alone."""
    import polars as pl

    changes: list[pl.Expr] = []
    for name in ("id", "visitor_id", *_TEXT):
        values = frame.get_column(name)
        if plain_ids is not None and name in ("id", "visitor_id"):
            values = values.filter(~values.str.contains(plain_ids))
        table = _table(values, fn)
        if table:
            changes.append(pl.col(name).replace(table))
    pages = _table(frame.get_column("pages").explode(), fn)
    if pages:
        changes.append(pl.col("pages").list.eval(pl.element().replace(pages)))
    pairs = frame.get_column("fields").explode().struct.unnest()
    keys, texts = _table(pairs.get_column("key"), fn), _table(pairs.get_column("value"), fn)
    if keys or texts:
        key, value = pl.element().struct.field("key"), pl.element().struct.field("value")
        changes.append(
            pl.col("fields").list.eval(
                pl.struct(key.replace(keys) if keys else key, value.replace(texts) if texts else value)
            )
        )
    return frame.with_columns(changes) if changes else frame


def _table(series: pl.Series, fn: Callable[[str], str]) -> dict[str, str]:
    """{value: fn(value)} for each distinct value that `fn` changes."""
    return {v: w for v in series.drop_nulls().unique().to_list() if (w := fn(v)) != v}


# ------------------------------------------------------------------------------------------- the store


def encode(frame: pl.DataFrame) -> bytes:
    """A day as a Parquet body (zstd level 1: smaller and quicker than 3 here, see bench/store_speed.py)."""
    buffer = io.BytesIO()
    frame.select(COLUMNS).write_parquet(buffer, compression="zstd", compression_level=1, statistics=False)
    return buffer.getvalue()


def decode(body: bytes) -> pl.DataFrame:
    """The frame `encode` wrote; ValueError when `body` is not such a day."""
    import polars as pl

    try:
        frame = pl.read_parquet(io.BytesIO(body))
    except Exception as exc:
        raise ValueError(f"not a stored day: {type(exc).__name__}") from None
    if frame.schema != schema():
        raise ValueError("not a stored day: unexpected columns")
    return frame
