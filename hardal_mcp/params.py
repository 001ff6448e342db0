"""Tool arguments made safe before any request: time windows resolved, ids checked. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InputError

Timeframe = Literal["today", "yesterday", "last7days", "last30days", "custom"]
Order = Literal["asc", "desc"]  # of a session's activity: asc = oldest first
OrderBy = Literal["timestamp", "name", "type"]
TIMEFRAMES: tuple[Timeframe, ...] = ("today", "yesterday", "last7days", "last30days", "custom")
MAX_WINDOW_DAYS = 366

# Opaque ids (slugs, cuids, `sess_…`), but nothing that could step out of a URL path segment.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:~@-]{0,127}")


@dataclass(frozen=True, slots=True)
class Window:
    """A closed range of calendar days in one time zone: what a question is about."""

    timeframe: Timeframe
    start: date
    end: date
    timezone: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def today(self) -> date:
        return datetime.now(ZoneInfo(self.timezone)).date()

    def previous(self) -> Window:
        """The window of equal length that ends the day before this one starts.

        Raises InputError (naming start_date) when that window would begin before 0001-01-01."""
        try:
            end = self.start - timedelta(days=1)
            start = end - timedelta(days=self.days - 1)
        except OverflowError:
            raise InputError(
                "start_date",
                f"{self.start} leaves no room for the previous period of {self.days} day"
                f"{'s' if self.days > 1 else ''} (dates begin at {date.min}); use a later start_date "
                "or drop compare.",
            ) from None
        return Window("custom", start, end, self.timezone)

    def describe(self) -> str:
        span = self.start.isoformat() if self.days == 1 else f"{self.start} → {self.end}"
        label = "" if self.timeframe == "custom" else f"{self.timeframe}: "
        return f"{label}{span} ({self.timezone}, {self.days} day{'s' if self.days > 1 else ''})"


def check_timezone(value: str, parameter: str = "timezone") -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(parameter, f"unknown IANA time zone {value!r}; use e.g. 'Europe/Istanbul' or 'UTC'.") from None
    return value


def check_id(parameter: str, value: str) -> str:
    value = value.strip()
    if not _ID.fullmatch(value):
        raise InputError(
            parameter,
            "must be 1-128 characters of letters, digits and _ . : ~ @ - (starting with a letter or digit); "
            "copy it exactly as Hardal shows it.",
        )
    return value


def _parse_date(parameter: str, value: str) -> date:
    text = value.strip()
    try:
        return date.fromisoformat(text[:10]) if len(text) > 10 and text[10] in "T " else date.fromisoformat(text)
    except ValueError:
        raise InputError(parameter, f"{value!r} is not a date; use YYYY-MM-DD, e.g. '2026-11-01'.") from None


def resolve_window(
    timeframe: str | None,
    start_date: str | None,
    end_date: str | None,
    timezone: str,
    now: datetime | None = None,
) -> Window:
    """Turn the tool's time arguments into explicit dates in `timezone`.

    `timeframe` defaults to last7days; a `start_date` alone implies custom up to today. Presets are
    resolved here, so every page of a scan asks for the same dates even across midnight.
    """
    check_timezone(timezone)
    today = (now or datetime.now(ZoneInfo("UTC"))).astimezone(ZoneInfo(timezone)).date()
    if timeframe is None:
        timeframe = "custom" if start_date or end_date else "last7days"
    if timeframe not in TIMEFRAMES:
        raise InputError("timeframe", f"{timeframe!r} is not one of {', '.join(TIMEFRAMES)}.")
    if timeframe != "custom":
        if start_date or end_date:
            raise InputError(
                "timeframe", f"{timeframe!r} sets its own dates; drop start_date/end_date or use 'custom'."
            )
        back = {"today": (0, 0), "yesterday": (1, 1), "last7days": (6, 0), "last30days": (29, 0)}[timeframe]
        return Window(timeframe, today - timedelta(days=back[0]), today - timedelta(days=back[1]), timezone)
    if not start_date:
        raise InputError("start_date", "is required with timeframe 'custom' (YYYY-MM-DD).")
    start = _parse_date("start_date", start_date)
    end = _parse_date("end_date", end_date) if end_date else today
    if start > today:
        raise InputError("start_date", f"{start} is in the future (today is {today} in {timezone}).")
    if end < start:
        raise InputError("end_date", f"{end} is before start_date {start}.")
    if (end - start).days + 1 > MAX_WINDOW_DAYS:
        raise InputError("end_date", f"the window spans more than {MAX_WINDOW_DAYS} days; split the question.")
    return Window("custom", start, end, timezone)
