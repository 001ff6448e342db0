"""Switchable faults: the ways a real API, its proxies and the network fail, on demand and per website.

A fault is attached to a website id through :attr:`SandboxConfig.faults` (key ``"*"``: every website
without its own entry). Each request to a website gets an ordinal ``n`` (0, 1, 2, … over both routes,
counted on arrival); a fault acts on requests ``after <= n < after + times`` (``times=None``: on every
one from ``after`` on). So ``ErrorStatus(503, times=2)`` is a burst that clears, ``ErrorStatus(503)`` an
outage, and ``Slow(delay=3, after=1)`` a site whose first page is quick and every later one slow.

Faults of the exchange act on both routes:

* :class:`ErrorStatus` answers an error status (429, 5xx…) with Hardal's JSON error body, optionally
  with ``Retry-After`` in seconds or as an HTTP-date;
* :class:`ProxyPage` answers an HTML error page, as a gateway in front of the API does (502 by default);
* :class:`Slow` waits ``delay`` seconds, then answers normally;
* :class:`Drop` sends the status line, headers (with the full ``Content-Length``) and the first
  ``keep_bytes`` of the body, then closes the connection. It needs a real server (``serve``,
  ``serve_in_thread``): an in-process ASGI transport has no connection to drop and reports a broken app;
* :class:`Truncated` answers 200 with the JSON body cut short (the length header matches the cut body);
* :class:`WrongShape` answers 200 with valid JSON that is not the documented shape.

Faults of the data act on the sessions list only (the activity route answers normally):

* :class:`Drift` renders sessions with schema drift, chosen per session by :func:`drift_variant`:
  snake_case keys, durations as numbers or ``"3m"``, extra keys, ``null`` fields, missing fields,
  re-typed fields, and items with no usable id (which a client can only drop and count);
* :class:`EmptyPages` answers every page after the first with no sessions, ``hasMore`` still true;
* :class:`ShiftingTotal` makes the window gain (``step > 0``) or lose (``step < 0``) its oldest sessions
  as requests go by, so ``total`` changes during a scan and late pages come back short or empty;
* :class:`LyingHasMore` always says ``hasMore: true`` (and can hide ``total``, leaving a client only
  the lie and the page lengths);
* :class:`HeadInserts` inserts ``per_request`` new sessions at the head of the window before each request,
  so offsets shift between pages and a naive scan sees the same session on two pages.

With ``echo_auth=True`` a fault quotes the request's ``Authorization`` header in what it sends (error
messages, HTML pages, extra keys), as a misconfigured debug proxy does: a client must never pass it on.

:data:`PRESETS` names a typical instance of each fault, for a command-line switch or a quick test.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any, Final, Literal

from hardal_mcp.sandbox.data import stable_hash

_WEBSITE_KEY = re.compile(r"\*|[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, kw_only=True)
class Fault:
    """When a fault acts: on requests ``after`` to ``after + times - 1`` of a website (``times=None``: all)."""

    times: int | None = None
    after: int = 0
    echo_auth: bool = False

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        if self.after < 0:
            raise ValueError("after must be >= 0")

    def acts_on(self, n: int) -> bool:
        """Whether the website's ``n``-th request (0-based) is affected."""
        return n >= self.after and (self.times is None or n < self.after + self.times)


# --- Faults of the exchange -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ErrorStatus(Fault):
    """An error status with Hardal's JSON error body; ``retry_after`` seconds go into ``Retry-After``,
    as a number or (``http_date=True``) as the HTTP-date that many seconds ahead, rounded up."""

    status: int = 503
    retry_after: float | None = None
    http_date: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")

    def retry_header(self, now: float) -> tuple[str, float] | None:
        """``(Retry-After value, Unix time before which a retry is too early)``, or None."""
        if self.retry_after is None:
            return None
        if self.http_date:
            until = float(math.ceil(now + self.retry_after))  # HTTP-dates have whole seconds
            return email.utils.formatdate(until, usegmt=True), until
        seconds = math.ceil(self.retry_after)
        return str(seconds), now + seconds


@dataclass(frozen=True, kw_only=True)
class ProxyPage(Fault):
    """An HTML error page from a gateway in front of the API."""

    status: int = 502


@dataclass(frozen=True, kw_only=True)
class Slow(Fault):
    """Answer normally, ``delay`` seconds late."""

    delay: float = 3.0


@dataclass(frozen=True, kw_only=True)
class Drop(Fault):
    """Close the connection after the headers and the first ``keep_bytes`` of the body (real servers only)."""

    keep_bytes: int = 64


@dataclass(frozen=True, kw_only=True)
class Truncated(Fault):
    """A 200 whose JSON body stops after ``keep`` (a fraction) of its bytes."""

    keep: float = 0.5


@dataclass(frozen=True, kw_only=True)
class WrongShape(Fault):
    """A 200 with well-formed JSON of another shape: ``{"results": [...], "count": n}``."""


# --- Faults of the data (sessions list only) -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Drift(Fault):
    """Sessions rendered with schema drift (see :data:`DRIFT_VARIANTS`)."""


@dataclass(frozen=True, kw_only=True)
class EmptyPages(Fault):
    """Pages after the first (``offset > 0``) hold no sessions; pagination still says there are more."""

    hide_total: bool = False


@dataclass(frozen=True, kw_only=True)
class ShiftingTotal(Fault):
    """The window shows its newest ``start`` share of sessions at first, then ``step`` more (or fewer, if
    negative) on each later request: the oldest sessions arrive late, or expire, during a scan."""

    step: int = -50
    start: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.start <= 1.0:
            raise ValueError("start must be between 0 and 1")

    def visible(self, total: int, n: int) -> int:
        """How many of the window's ``total`` sessions request ``n`` sees."""
        return max(0, min(total, round(self.start * total) + self.step * (n - self.after)))


@dataclass(frozen=True, kw_only=True)
class LyingHasMore(Fault):
    """``hasMore`` is always true; with ``hide_total`` the pagination object carries no ``total`` either."""

    hide_total: bool = False


@dataclass(frozen=True, kw_only=True)
class HeadInserts(Fault):
    """``per_request`` new sessions start (at the head of the window) before each affected request."""

    per_request: int = 5


# --- Presets ----------------------------------------------------------------------------------------

PRESETS: Final[Mapping[str, Fault]] = {
    "429": ErrorStatus(status=429, times=2),
    "429-retry-after": ErrorStatus(status=429, retry_after=1, times=1),
    "429-retry-date": ErrorStatus(status=429, retry_after=1, http_date=True, times=1),
    "429-always": ErrorStatus(status=429),
    "500-burst": ErrorStatus(status=500, times=2),
    "502-burst": ErrorStatus(status=502, times=2),
    "503-burst": ErrorStatus(status=503, times=2),
    "504-burst": ErrorStatus(status=504, times=2),
    "503-always": ErrorStatus(status=503),
    "proxy-502": ProxyPage(times=2),
    "slow": Slow(delay=35.0, times=1),  # beyond the client's default 30 s timeout
    "slow-after-first": Slow(delay=5.0, after=1),
    "drop": Drop(times=2),
    "truncated": Truncated(times=2),
    "wrong-shape": WrongShape(),
    "drift": Drift(),
    "empty-pages": EmptyPages(),
    "total-grows": ShiftingTotal(step=50, start=0.5),
    "total-shrinks": ShiftingTotal(step=-50),
    "has-more-lies": LyingHasMore(hide_total=True),
    "head-inserts": HeadInserts(),
}


def check_faults(faults: Mapping[str, Fault]) -> None:
    """Raise ValueError unless every key is a website id (or ``*``) and every value a :class:`Fault`."""
    for key, fault in faults.items():
        if not _WEBSITE_KEY.fullmatch(key):
            raise ValueError(f"faults: {key!r} is not a website id ([A-Za-z0-9_-]{{1,64}}) or '*'")
        if not isinstance(fault, Fault):
            raise ValueError(f"faults[{key!r}]: expected a Fault, got {type(fault).__name__}")


# --- Bodies -----------------------------------------------------------------------------------------


def echo(fault: Fault, authorization: str) -> str:
    """What an ``echo_auth`` fault adds to its messages."""
    return f" (request had Authorization: {authorization})" if fault.echo_auth and authorization else ""


def proxy_page(status: int, extra: str) -> str:
    """An nginx-style error page."""
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}.get(status, "Error")
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx{escape(extra)}</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def truncated(body: str, keep: float) -> str:
    """``body`` cut to ``keep`` of its length, always short of its end."""
    return body[: min(len(body) - 1, max(1, int(len(body) * keep)))]


def wrong_shape(sessions_body: str, extra: str) -> str:
    """The sessions of a list body under other keys."""
    body: dict[str, Any] = json.loads(sessions_body)
    items = body.get("sessions", body.get("events", []))
    out: dict[str, Any] = {"results": items, "count": len(items)}
    if extra:
        out["debug"] = extra.strip()
    return json.dumps(out, separators=(",", ":"))


def retry_after_header(fault: ErrorStatus) -> tuple[dict[str, str] | None, float | None]:
    """Headers for an :class:`ErrorStatus` answer, and the Unix time before which a retry is too early."""
    header = fault.retry_header(time.time())
    if header is None:
        return None, None
    return {"Retry-After": header[0]}, header[1]


# --- Schema drift -----------------------------------------------------------------------------------

DriftVariant = Literal[
    "documented", "snake_case", "unit_durations", "extra_keys", "nulls", "missing", "retyped", "no_id"
]
DRIFT_VARIANTS: Final[tuple[DriftVariant, ...]] = (
    "documented",  # as the docs show it
    "snake_case",  # visitor_id, started_at, page_views; duration a number of seconds
    "unit_durations",  # duration "3m" / "2m5s" / "1h2m3s"; pageViews a numeric string; events a float
    "extra_keys",  # undocumented keys (an object, a list, a flag); a number among the fields' values
    "nulls",  # browser, os, device, duration and fields are null
    "missing",  # no visitorId, country, duration or fields
    "retyped",  # country a list, pageViews a word: both unreadable, the rest intact
    "no_id",  # id is null: the item cannot be read as a session at all
)
# What a tolerant client can no longer read in each variant ("*" = the whole item).
DRIFT_UNREADABLE: Final[Mapping[DriftVariant, frozenset[str]]] = {
    "documented": frozenset(),
    "snake_case": frozenset(),
    "unit_durations": frozenset(),
    "extra_keys": frozenset(),
    "nulls": frozenset({"browser", "os", "device", "duration", "fields"}),
    "missing": frozenset({"visitorId", "country", "duration", "fields"}),
    "retyped": frozenset({"country", "pageViews"}),
    "no_id": frozenset({"*"}),
}


def drift_variant(session_id: str) -> DriftVariant:
    """The drift a session gets: fixed per id, so a test can tell what each served session looked like."""
    return DRIFT_VARIANTS[stable_hash("drift", session_id) % len(DRIFT_VARIANTS)]


def _unit_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or hours else "") + (f"{secs}s" if secs else "")
    return text or "0s"


def drift(session: dict[str, Any], extra: str) -> dict[str, Any]:
    """One rendered (documented-shape) session as its drift variant renders it."""
    variant = drift_variant(str(session["id"]))
    s = dict(session)
    seconds = int(str(s["duration"]).removesuffix("s"))
    if variant == "snake_case":
        renamed = {"visitorId": "visitor_id", "startedAt": "started_at", "pageViews": "page_views"}
        s = {renamed.get(k, k): v for k, v in s.items()}
        s["duration"] = seconds
    elif variant == "unit_durations":
        s["duration"] = _unit_duration(seconds)
        s["pageViews"] = str(s["pageViews"])
        s["events"] = float(s["events"])
    elif variant == "extra_keys":
        s["engagement"] = {"score": round((stable_hash(s["id"]) % 100) / 100, 2), "scrolled": True}
        s["tags"] = ["web", "organic"]
        s["isBot"] = False
        s["fields"] = {**s["fields"], "cart_items": 3}
        if extra:
            s["debug"] = extra.strip()
    elif variant == "nulls":
        s.update(browser=None, os=None, device=None, duration=None, fields=None)
    elif variant == "missing":
        for key in ("visitorId", "country", "duration", "fields"):
            del s[key]
    elif variant == "retyped":
        s["country"] = [s["country"]]
        s["pageViews"] = "several"
    elif variant == "no_id":
        s["id"] = None
    return s


# The faults that change the sessions list's data rather than the exchange.
DATA_FAULTS: Final = (Drift, EmptyPages, ShiftingTotal, LyingHasMore, HeadInserts)
