"""Query semantics of the sandbox: date windows, newest-first paging and JSON rendering.

Pure functions over :mod:`hardal_mcp.sandbox.data`; the HTTP layer only parses and validates.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hardal_mcp.sandbox.data import DAY_SECONDS, Event, Session, Site, day_count, day_starts, sessions_between

TIMEFRAMES = ("today", "yesterday", "last7days", "last30days", "custom")
# Like an account's retention setting: older sessions are gone. It also bounds the work that an
# absurd date range can cause.
RETENTION_DAYS = 731


class ParamError(ValueError):
    """A query parameter has a value the API rejects (HTTP 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"Invalid {param}: {message}")


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParamError("timezone", f"unknown IANA timezone {name!r}") from None


def parse_date(param: str, value: str) -> date:
    """``YYYY-MM-DD``, or a full ISO 8601 datetime whose date part is taken as written."""
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value).date()
    except ValueError:
        raise ParamError(param, f"expected YYYY-MM-DD, got {value!r}") from None


def _midnight(day: date, tz: tzinfo) -> int:
    return int(datetime.combine(day, time(), tzinfo=tz).timestamp())


def resolve_window(
    timeframe: str, start_date: str | None, end_date: str | None, tz: tzinfo, now: datetime
) -> tuple[int, int]:
    """The window ``[start, end)`` in Unix seconds that a timeframe covers in ``tz``.

    Presets end with today (inclusive) and ignore the dates. ``custom`` spans whole local days from
    ``startDate`` to ``endDate``. The docs do not say what ``custom`` means without dates; the sandbox
    reads a missing ``startDate`` as ``endDate`` and a missing ``endDate`` as today, so no dates at all
    means today, matching "returns the latest sessions".
    """
    today = now.astimezone(tz).date()
    if timeframe == "custom":
        end = parse_date("endDate", end_date) if end_date else today
        start = parse_date("startDate", start_date) if start_date else end
        if end < start:
            raise ParamError("endDate", f"{end.isoformat()} is before startDate {start.isoformat()}")
    elif timeframe in TIMEFRAMES:
        span = {"today": (0, 0), "yesterday": (1, 1), "last7days": (6, 0), "last30days": (29, 0)}[timeframe]
        start, end = today - timedelta(days=span[0]), today - timedelta(days=span[1])
    else:
        raise ParamError("timeframe", f"expected one of {', '.join(TIMEFRAMES)}, got {timeframe!r}")
    return _midnight(start, tz), _midnight(end + timedelta(days=1), tz)


def _visible_span(now: datetime) -> tuple[int, int]:
    """``[first, end)`` in Unix seconds: sessions kept by retention that have started by ``now``."""
    now_ts = int(now.timestamp())
    return (now_ts // DAY_SECONDS - RETENTION_DAYS) * DAY_SECONDS, now_ts + 1


def is_visible(session: Session, now: datetime) -> bool:
    first, end = _visible_span(now)
    return first <= session.started < end


@dataclass(frozen=True, slots=True)
class _Run:
    """Sessions ``lo`` to ``hi - 1`` of one UTC day that fall inside a window."""

    day: int
    lo: int
    hi: int


class Window:
    """The sessions of a site that started in ``[start, end)`` and no later than ``now``, newest first."""

    def __init__(self, site: Site, start: int, end: int, now: datetime) -> None:
        kept_from, started_by = _visible_span(now)
        start, end = max(start, kept_from), min(end, started_by)
        self.start, self.end = start, end  # Unix seconds, after retention and `now` cut the window
        self.site = site
        self._runs = list(self._find_runs(start, end)) if start < end else []
        self.total = sum(run.hi - run.lo for run in self._runs)

    def _find_runs(self, start: int, end: int) -> Iterator[_Run]:
        for day in range((end - 1) // DAY_SECONDS, start // DAY_SECONDS - 1, -1):
            if start <= day * DAY_SECONDS and (day + 1) * DAY_SECONDS <= end:
                run = _Run(day, 0, day_count(self.site, day))  # whole day: no need for start times
            else:
                starts = day_starts(self.site, day)
                run = _Run(day, bisect_left(starts, start), bisect_left(starts, end))
            if run.hi > run.lo:
                yield run

    def page(self, offset: int, limit: int) -> list[Session]:
        """``limit`` sessions after skipping the ``offset`` newest; only their blocks get generated."""
        out: list[Session] = []
        for run in self._runs:
            size = run.hi - run.lo
            if offset >= size:
                offset -= size
                continue
            # Newest first within the run: count back from its end.
            hi = run.hi - offset
            lo = max(run.lo, hi - (limit - len(out)))
            out.extend(reversed(sessions_between(self.site, run.day, lo, hi)))
            offset = 0
            if len(out) == limit:
                break
        return out


# Compact JSON, non-ASCII characters kept as they are (the body is UTF-8). One shared encoder: json.dumps
# with options builds a new one per call, which shows when rendering thousands of sessions.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


# Most of a session's JSON recurs from session to session (browsers, countries, common paths, UTM
# sets), so each distinct piece is encoded once; that makes rendering several times cheaper than one
# json.dumps of the whole page, and the page of 1000 sessions a matter of milliseconds.
@lru_cache(maxsize=1024)
def _encode(value: str) -> str:
    return dumps(value)


@lru_cache(maxsize=65_536)
def _encode_pages(pages: tuple[str, ...]) -> str:
    return dumps(pages)


@lru_cache(maxsize=65_536)
def _encode_fields(items: tuple[tuple[str, str], ...]) -> str:
    return dumps(dict(items))


class Renderer:
    """Turns sessions and events into the API's JSON, with timestamps in one timezone."""

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz
        # Sessions close in time share a minute, and offsets change only on whole minutes, so
        # "YYYY-MM-DDTHH:MM:" and the offset need computing once per minute, not per timestamp.
        self._minutes: dict[int, tuple[str, str]] = {}

    def iso(self, ts: int) -> str:
        """ISO 8601 with the zone's offset at that instant, to the second."""
        minute, second = divmod(ts, 60)
        parts = self._minutes.get(minute)
        if parts is None:
            local = datetime.fromtimestamp(minute * 60, self._tz)
            if local.second:  # an offset with seconds (local mean time, a century ago): no shortcut
                return datetime.fromtimestamp(ts, self._tz).isoformat()
            text = local.isoformat()
            parts = self._minutes[minute] = (text[:17], text[19:])
        return f"{parts[0]}{second:02d}{parts[1]}"

    def session(self, s: Session) -> str:
        """One session object as JSON text. Ids need no escaping: the generator makes them [a-z0-9_]."""
        return (
            f'{{"id":"{s.id}","visitorId":"{s.visitor_id}","startedAt":"{self.iso(s.started)}",'
            f'"duration":"{s.duration}s","pageViews":{len(s.pages)},"events":{s.events},'
            f'"pages":{_encode_pages(s.pages)},"browser":{_encode(s.browser)},"os":{_encode(s.os)},'
            f'"device":{_encode(s.device)},"country":{_encode(s.country)},'
            f'"fields":{_encode_fields(tuple(s.fields.items()))}}}'
        )

    def sessions_body(self, sessions: list[Session], pagination: dict[str, int | bool]) -> str:
        """The list-sessions response as JSON text."""
        return f'{{"sessions":[{",".join(map(self.session, sessions))}],"pagination":{dumps(pagination)}}}'

    def event(self, session: Session, e: Event) -> dict[str, object]:
        return {
            "id": e.id,
            "type": e.type,
            "name": e.name,
            "timestamp": self.iso(session.started + e.offset),
            "url": e.url,
            "properties": e.properties,
        }


ORDER_BY = ("timestamp", "name", "type")
ORDERS = ("desc", "asc")


def order_events(events: list[Event], order_by: str, order: str) -> list[Event]:
    """Events sorted by one field; ties keep time order (and ``desc`` mirrors ``asc`` exactly)."""
    ordered = events if order_by == "timestamp" else sorted(events, key=lambda e: getattr(e, order_by))
    return ordered[::-1] if order == "desc" else ordered
