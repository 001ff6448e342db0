"""Upstream shapes, read tolerantly (reference §6): aliases for both casings, lenient durations,
optional everything but ids, extra keys ignored.

Sessions are the hot path (a scan reads up to 200,000): a page is decoded with orjson and each session
that has the documented shape becomes a slotted `Session` directly, at a few times pydantic's speed.
Anything else (snake_case keys, numbers as strings, nulls in lists, …) takes the lenient pydantic read,
which drops only the fields that do not fit."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError

from .errors import ProtocolError
from .sanitize import clean, redact_secret

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|hr|s|m|h|d)", re.IGNORECASE)


def parse_duration(value: Any) -> float | None:
    """Seconds from a number, `"180"`, `"180s"`, `"3m"`, `"1h 2m"` or `"00:03:00"`; None when unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            return None
        return seconds if 0 <= seconds < math.inf else None
    if isinstance(value, str):
        return _parse_duration_text(value)
    return None


@lru_cache(maxsize=4096)
def _parse_duration_text(text: str) -> float | None:
    text = text.strip().lower()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < math.inf else None
    if re.fullmatch(r"\d+(?::\d{1,2}){1,2}(?:\.\d+)?", text):
        total = 0.0
        for part in text.split(":"):
            total = total * 60 + float(part)
        return total if total < math.inf else None
    compact = text.replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts).lower() != compact:
        return None
    seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts)
    return seconds if seconds < math.inf else None


def _string_map(value: Any) -> Any:
    """`fields` is documented string→string; other values are kept as their JSON text, nulls dropped."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {
            str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in value.items()
            if v is not None
        }
    return value


def _string_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v) for v in value if v is not None]
    return value


M = TypeVar("M", bound=BaseModel)

Seconds = Annotated[float | None, BeforeValidator(parse_duration)]
StringMap = Annotated[dict[str, str], BeforeValidator(_string_map)]
StringList = Annotated[list[str], BeforeValidator(_string_list)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, populate_by_name=True)


@dataclass(slots=True)
class Session:
    """One visit, as `GET /api/websites/{id}/sessions` returns it (reference §2.1), normalised: duration
    in seconds, `fields` as text, ids as text."""

    id: str
    visitor_id: str | None = None
    started_at: datetime | None = None
    duration: float | None = None
    page_views: int | None = None
    events: int | None = None
    pages: list[str] = field(default_factory=list)
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    country: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def model_validate(cls, item: Any) -> Session:
        """A session from one item of a page, however it is spelled; ValueError if it has no usable id."""
        session = _documented(item) if type(item) is dict else None
        if session is None:
            shape = _lenient(_SessionShape, item)
            if shape is None:
                raise ValueError("not a session: no usable `id`")
            session = cls(**shape.model_dump())
        return session


class _SessionShape(_Tolerant):
    """The lenient reading of a session: every alias, coercion and tolerance of reference §6."""

    id: str = Field(min_length=1)
    visitor_id: str | None = Field(default=None, validation_alias=AliasChoices("visitorId", "visitor_id"))
    started_at: datetime | None = Field(default=None, validation_alias=AliasChoices("startedAt", "started_at"))
    duration: Seconds = None
    page_views: int | None = Field(default=None, validation_alias=AliasChoices("pageViews", "pageviews", "page_views"))
    events: int | None = None
    pages: StringList = Field(default_factory=list)
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    country: str | None = None
    fields: StringMap = Field(default_factory=dict)


class Pagination(_Tolerant):
    total: int | None = Field(default=None, ge=0)
    limit: int | None = None
    offset: int | None = None
    current_page: int | None = Field(default=None, validation_alias=AliasChoices("currentPage", "current_page"))
    total_pages: int | None = Field(default=None, validation_alias=AliasChoices("totalPages", "total_pages"))
    has_more: bool | None = Field(default=None, validation_alias=AliasChoices("hasMore", "has_more"))


@dataclass(slots=True)
class SessionItems:
    """A sessions page read item by item (see `frames` for the page the rest of the server uses)."""

    sessions: list[Session]
    pagination: Pagination | None = None
    dropped: int = 0  # items of the page that could not be read as sessions


class ActivityEvent(BaseModel):
    """One entry of a session's timeline (reference §2.2; only `id` and `type` are documented)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, populate_by_name=True)

    id: str | None = None
    type: str | None = Field(default=None, validation_alias=AliasChoices("type", "event_type", "eventType"))
    name: str | None = Field(default=None, validation_alias=AliasChoices("name", "event_name", "eventName"))
    timestamp: datetime | None = Field(
        default=None, validation_alias=AliasChoices("timestamp", "created_at", "createdAt", "time")
    )
    url: str | None = Field(default=None, validation_alias=AliasChoices("url", "path", "page"))
    properties: StringMap = Field(default_factory=dict, validation_alias=AliasChoices("properties", "props", "data"))


class ActivityPage(_Tolerant):
    events: list[ActivityEvent]  # required: an object without it is not an activity page
    total_count: int | None = Field(
        default=None, ge=0, validation_alias=AliasChoices("totalCount", "total_count", "total")
    )
    page: int | None = None
    page_size: int | None = Field(default=None, validation_alias=AliasChoices("pageSize", "page_size", "limit"))
    has_more: bool | None = Field(default=None, validation_alias=AliasChoices("hasMore", "has_more"))
    _dropped: int = PrivateAttr(default=0)

    @property
    def dropped(self) -> int:
        """Events of the page that could not be read."""
        return self._dropped


def parse_session_items(content: bytes) -> SessionItems:
    """Read a sessions page tolerantly, item by item; raise ProtocolError when the body is not a sessions
    page at all."""
    body = _unwrap(_loads(content))
    if isinstance(body, list):  # a bare array of sessions
        body = {"sessions": body}
    if not isinstance(body, dict) or not isinstance(body.get("sessions"), list):
        raise ProtocolError(f"Hardal returned JSON without a `sessions` list ({_shape(body)}).")
    sessions = []
    for item in body["sessions"]:
        session = _documented(item) if type(item) is dict else None
        if session is None:
            shape = _lenient(_SessionShape, item)
            session = Session(**shape.model_dump()) if shape is not None else None
        if session is not None:
            sessions.append(session)
    pagination = _lenient(Pagination, body.get("pagination"))
    return SessionItems(sessions, pagination, dropped=len(body["sessions"]) - len(sessions))


_STR = str
_OPTIONAL_TEXT = (str, type(None))


def _documented(item: dict[str, Any]) -> Session | None:
    """The session if `item` has exactly the documented shape and types, else None (read leniently)."""
    try:  # indexing, not .get(): this runs for every session of a scan
        sid, visitor, started = item["id"], item["visitorId"], item["startedAt"]
        views, events, pages, fields = item["pageViews"], item["events"], item["pages"], item["fields"]
        browser, os, device, country = item["browser"], item["os"], item["device"], item["country"]
    except KeyError:
        return None
    if (
        type(sid) is not str
        or not sid
        or type(visitor) not in _OPTIONAL_TEXT
        or type(started) is not str
        or type(views) is not int
        or type(events) is not int
        or type(pages) is not list
        or type(fields) is not dict
        or type(browser) not in _OPTIONAL_TEXT
        or type(os) not in _OPTIONAL_TEXT
        or type(device) not in _OPTIONAL_TEXT
        or type(country) not in _OPTIONAL_TEXT
        or not all(type(p) is _STR for p in pages)
        or not all(type(v) is _STR for v in fields.values())
    ):
        return None
    try:
        at = datetime.fromisoformat(started)
    except ValueError:
        return None
    return Session(sid, visitor, at, parse_duration(item.get("duration")), views, events, pages, browser, os, device,
                   country, fields)  # fmt: skip


def parse_activity_page(content: bytes) -> ActivityPage:
    try:
        return ActivityPage.model_validate_json(content)
    except ValidationError:
        pass
    body = _unwrap(_loads(content))
    if isinstance(body, list):
        body = {"events": body}
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ProtocolError(f"Hardal returned JSON without an `events` list ({_shape(body)}).")
    events = [e for e in (_lenient(ActivityEvent, item) for item in body["events"]) if e is not None]
    meta = _lenient(ActivityPage, {**body, "events": []}) or ActivityPage(events=[])
    page = meta.model_copy(update={"events": events})
    page._dropped = len(body["events"]) - len(events)
    return page


def _loads(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses but JSON allows or Python reads: integers beyond 64 bits, NaN
        return json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProtocolError("Hardal returned a body that is not JSON.") from None


def _unwrap(body: Any) -> Any:
    """Accept the Nexus-style envelope `{"success": true, "data": {...}}` too (reference §4.2)."""
    if isinstance(body, dict) and "data" in body and "sessions" not in body and "events" not in body:
        return body["data"]
    return body


def _lenient(model: type[M], item: Any) -> M | None:
    """Validate `item`, dropping the fields that do not fit; None if it still cannot be read."""
    if not isinstance(item, dict):
        return None
    data = dict(item)
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
            if not bad & data.keys():
                return None  # a required field is missing: nothing to drop
            for key in bad & data.keys():
                del data[key]
    return None


def _shape(body: Any) -> str:
    """What an unexpected body is, for an error message. Its keys are upstream text: each is cleaned (one
    line, credentials masked, cut) and JSON-quoted, so none can pose as part of the message."""
    if isinstance(body, dict):
        keys = ", ".join(json.dumps(clean(k, 40), ensure_ascii=False) for k in sorted(map(str, body))[:6])
        more = f" (+{len(body) - 6} more)" if len(body) > 6 else ""
        return f"an object with keys {keys}{more}" if keys else "an empty object"
    return f"a JSON {type(body).__name__}"


def secret_forms(secret: str) -> tuple[bytes, ...]:
    """The ways a JSON body can spell `secret` as a string: raw, with its ASCII escapes, `/` as `\\/`."""
    escaped = json.dumps(secret)[1:-1]
    forms = {secret, escaped, escaped.replace("/", "\\/"), json.dumps(secret, ensure_ascii=False)[1:-1]}
    return tuple(form.encode() for form in forms if form)


def mentions(content: bytes, secret: str) -> bool:
    """Whether a body spells `secret` anywhere (cheap: a few substring searches of the raw bytes)."""
    return bool(secret) and any(form in content for form in secret_forms(secret))


def scrub_secret(page: ActivityPage, secret: str, mask: str = "[key]") -> None:
    """Replace `secret` (the API key) in every string of a parsed page, keys included, in place. Only
    called for a body that `mentions` it: Hardal echoing a key must not put it in front of a model."""

    def text(value: str | None) -> str | None:
        return None if value is None else redact_secret(value, secret, mask)

    def nested(value: Any) -> Any:
        if isinstance(value, str):
            return redact_secret(value, secret, mask)
        if isinstance(value, dict):
            return {redact_secret(str(k), secret, mask): nested(v) for k, v in value.items()}
        if isinstance(value, list):
            return [nested(v) for v in value]
        return value

    for e in page.events:
        e.id, e.type, e.name, e.url = text(e.id), text(e.type), text(e.name), text(e.url)
        e.properties = nested(e.properties)
        if e.model_extra:
            scrubbed = nested(e.model_extra)
            e.model_extra.clear()
            e.model_extra.update(scrubbed)
