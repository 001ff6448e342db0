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


def _coercible(content: bytes, pages: int, fields: int) -> bool:
    """Whether Polars may have coerced a value the tolerant read would drop: a string or number sent as
    `pages` (read as a list of one page), anything but an object as `fields`, or a boolean as text. Counted
    on the raw bytes (`"pages":[` once per list sent; a match inside a string value is impossible, its
    quotes are escaped), so it costs a few scans of memory; a body spelled otherwise (spaces after colons)
    only takes the tolerant way."""
    if content.count(b'"pages":[') != pages or content.count(b'"fields":{') != fields:
        return True
    end = content.rfind(b'"pagination"')
    end = len(content) if end < 0 else end
    for word in (b"true", b"false"):  # as a JSON value: after a colon, a bracket or a comma
        at = content.find(word, 0, end)
        while at > 0:
            if content[at - 1] in _BEFORE_VALUE:
                return True
            at = content.find(word, at + 1, end)
    return False


_BEFORE_VALUE = frozenset(b":[,")


def _documented_page(content: bytes) -> SessionsPage | None:
    """The page read by Polars, or None when it is not exactly the documented shape (read tolerantly)."""
    import polars as pl

    if not content.lstrip().startswith(b"{"):
        return None  # a bare array, or not JSON: the tolerant read judges
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
    sent = rows.select(
        (pl.col("pages").is_not_null().sum() if "pages" in types else pl.lit(0)).alias("pages"),
        (pl.col("fields").is_not_null().sum() if "fields" in types else pl.lit(0)).alias("fields"),
    ).row(0)
    if _coercible(content, *sent):
        return None
    return _columns(rows, types, pagination)


def _columns(rows: pl.DataFrame, types: dict[str, Any], pagination: Pagination | None) -> SessionsPage | None:
    """The documented columns of a page's items, in one query of the engine (its cost is mostly per call)."""
    import polars as pl

    def column(name: str, dtype: Any) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in types else pl.lit(None, dtype)

    total = rows.height
    rows = rows.filter(pl.col("id").is_not_null() & (pl.col("id") != ""))
    duration = column("duration", pl.String if types.get("duration") == pl.String else pl.Float64)
    if types.get("duration") == pl.String:  # "180s", "3m", …: the tolerant parser, once per distinct text
        distinct = rows.get_column("duration").drop_nulls().unique().to_list()
        table = {text: parse_duration(text) for text in distinct}
        seconds = duration.replace_strict(table, default=None, return_dtype=pl.Float64) if table else None
    else:  # a number of seconds: negative and non-finite ones are unknown, as `parse_duration` reads them
        seconds = pl.when(duration.is_finite() & (duration >= 0)).then(duration)
    text = column("startedAt", pl.String)
    tail = text.str.slice(-6)
    sign = pl.when(tail.str.slice(0, 1) == "-").then(-1).otherwise(1)
    frame = rows.select(
        pl.col("id"),
        column("visitorId", pl.String).alias("visitor_id"),
        text.str.replace(r"Z$", "+00:00")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC", strict=False)
        .alias("started"),
        pl.when(text.str.ends_with("Z"))
        .then(0)
        .otherwise(sign * (tail.str.slice(1, 2).cast(pl.Int32) * 3600 + tail.str.slice(4, 2).cast(pl.Int32) * 60))
        .cast(pl.Int32)
        .alias("offset"),
        (pl.lit(None, pl.Float64) if seconds is None else seconds).alias("duration"),
        column("pageViews", pl.Int64).alias("page_views"),
        column("events", pl.Int64).alias("events"),
        column("pages", pl.List(pl.String)).list.drop_nulls().fill_null([]).alias("pages"),
        *(column(name, pl.String).alias(name) for name in _TEXT),
        _fields(rows, types.get("fields")),
        # A start that is not plain ISO 8601 with an offset is Python's `datetime.fromisoformat` to judge
        (text.is_null() | text.str.contains(_ISO)).all().alias("plain"),
        text.null_count().alias("no_start"),
    )
    plain, no_start = frame.row(0)[-2:] if frame.height else (True, 0)
    if not plain or frame.get_column("started").null_count() != no_start:
        return None  # (a date Polars refused, say 24:00:00, too)
    return SessionsPage(frame.select(COLUMNS), pagination, dropped=total - frame.height)


_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"


def _fields(rows: pl.DataFrame, sent: Any) -> pl.Series:
    """`fields` (an object per session, read as a struct of the page's keys) as `{key, value}` pairs in
    the page's key order, without the keys a session sent as null or lacks: one row per (session, key)
    with a value, then back to a list per session (quicker than building the lists element-wise)."""
    import polars as pl

    kv = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
    if not isinstance(sent, pl.Struct) or not sent.fields or not rows.height:
        return pl.Series("fields", [[]] * rows.height, kv)
    at = pl.int_range(pl.len(), dtype=pl.UInt32).alias("at")
    pairs = (
        rows.select(at, pl.col("fields").cast(pl.Struct({f.name: pl.String for f in sent.fields})))
        .unnest("fields")
        .unpivot(index="at", variable_name="key", value_name="value")
        .drop_nulls("value")
        .group_by("at")
        .agg(pl.struct("key", "value").alias("fields"))
    )
    every = pl.DataFrame({"at": pl.int_range(rows.height, dtype=pl.UInt32, eager=True)})
    lists = every.join(pairs, on="at", how="left", maintain_order="left").get_column("fields")
    return lists.fill_null([]).cast(kv)


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
