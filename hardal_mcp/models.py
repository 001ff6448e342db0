"""Upstream shapes, read tolerantly (reference §6): aliases for both casings, lenient durations,
optional everything but ids, extra keys ignored. Parsing takes the fast path (pydantic-core on the raw
bytes) and falls back to a per-item lenient read only when a page does not fit the documented shape."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError

from .errors import ProtocolError

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


class Session(_Tolerant):
    """One visit, as `GET /api/websites/{id}/sessions` returns it (reference §2.1)."""

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


class SessionsPage(_Tolerant):
    sessions: list[Session]  # required: an object without it is not a sessions page
    pagination: Pagination | None = None
    _dropped: int = PrivateAttr(default=0)  # set by the parser, never by the body

    @property
    def dropped(self) -> int:
        """Items of the page that could not be read as sessions."""
        return self._dropped


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


def parse_sessions_page(content: bytes) -> SessionsPage:
    """Read a sessions page; raise ProtocolError when the body is not a sessions page at all."""
    try:
        return SessionsPage.model_validate_json(content)
    except ValidationError:
        pass
    body = _unwrap(_loads(content))
    if isinstance(body, list):  # a bare array of sessions
        body = {"sessions": body}
    if not isinstance(body, dict) or not isinstance(body.get("sessions"), list):
        raise ProtocolError(f"Hardal returned JSON without a `sessions` list ({_shape(body)}).")
    sessions = [s for s in (_lenient(Session, item) for item in body["sessions"]) if s is not None]
    pagination = _lenient(Pagination, body.get("pagination"))
    page = SessionsPage(sessions=sessions, pagination=pagination)
    page._dropped = len(body["sessions"]) - len(sessions)
    return page


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
    if isinstance(body, dict):
        keys = ", ".join(sorted(map(str, body))[:6])
        return f"an object with keys {keys}" if keys else "an empty object"
    return f"a JSON {type(body).__name__}"
