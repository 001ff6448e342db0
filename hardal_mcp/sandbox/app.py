"""HTTP layer of the sandbox: Hardal's session routes with its auth, errors, paging and rate limit."""

from __future__ import annotations

import copy
import hmac
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hardal_mcp.sandbox.config import SandboxConfig
from hardal_mcp.sandbox.data import Site, find_session, session_events
from hardal_mcp.sandbox.query import (
    ORDER_BY,
    ORDERS,
    ParamError,
    Renderer,
    Window,
    dumps,
    is_visible,
    order_events,
    parse_timezone,
    resolve_window,
)

DEFAULT_TIMEZONE = "Europe/Istanbul"
MAX_SESSIONS_PAGE = 1000
MAX_EVENTS_PAGE = 500
_SITE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INTEGER = re.compile(r"-?\d{1,12}")
_BOOLEANS = frozenset({"true", "false", "1", "0"})


class ApiError(Exception):
    """An error answered with Hardal's documented body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class SlidingWindowLimiter:
    """At most ``limit`` accepted requests per key in any ``window`` seconds (a sliding log).

    Rejected requests are not logged, so a client that keeps retrying still gets in once a slot frees.
    """

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._log: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float | None:
        """None if the request may go ahead, else the seconds until a slot frees."""
        now = self._clock()
        log = self._log.setdefault(key, deque())
        while log and log[0] <= now - self._window:
            log.popleft()
        if len(log) < self._limit:
            log.append(now)
            return None
        return log[0] + self._window - now


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    text = body if isinstance(body, str) else dumps(body)  # a str is JSON rendered already
    return Response(text.encode(), status_code=status, headers=headers, media_type="application/json")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": {"code": status, "message": message}}, status, headers)


def _param(request: Request, name: str) -> str | None:
    # An empty value (``?startDate=``) counts as absent, as form-built URLs often send them.
    return request.query_params.get(name) or None


def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
    raw = _param(request, name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ParamError(name, f"expected an integer, got {raw!r}")
    if int(raw) < minimum:
        raise ParamError(name, f"must be at least {minimum}, got {raw}")
    return int(raw)


def _choice_param(request: Request, name: str, allowed: tuple[str, ...]) -> str:
    value = _param(request, name) or allowed[0]
    if value not in allowed:
        raise ParamError(name, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


class _Sandbox:
    """The routes and their shared state.

    Endpoints are async on purpose: generation is short CPU work, and staying on the event loop keeps
    the caches and the rate limiter single-threaded.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        limit = config.rate_limit_per_minute
        self._limiter = SlidingWindowLimiter(limit) if limit is not None else None

    def _now(self) -> datetime:
        return self._config.now or datetime.now(UTC)

    def _admit(self, request: Request) -> Site:
        """Checks shared by every route (key, rate limit, website); returns the site whose data is read."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        expected = self._config.api_key.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), expected):
            raise ApiError(401, "Invalid API key")
        if self._limiter is not None:
            wait = self._limiter.acquire(self._config.api_key)
            if wait is not None:
                retry = {"Retry-After": str(max(1, math.ceil(wait)))} if self._config.retry_after else None
                raise ApiError(429, "Rate limit exceeded", retry)

        website_id = request.path_params["website_id"]
        target = _param(request, "targetSignalId")
        if target is not None and not _SITE_ID.fullmatch(target):
            raise ParamError("targetSignalId", f"expected [A-Za-z0-9_-]{{1,64}}, got {target!r}")
        target = target or website_id
        for site_id in (website_id, target):
            # Any well-formed id is a site with its own data, except the reserved "missing…" ones.
            if not _SITE_ID.fullmatch(site_id) or site_id.startswith("missing"):
                raise ApiError(404, f"Website not found: {site_id}")
        hybrid = _param(request, "isHybrid")
        if hybrid is not None and hybrid.lower() not in _BOOLEANS:
            raise ParamError("isHybrid", f"expected true or false, got {hybrid!r}")
        return Site(self._config.seed, target, self._config.sessions_per_day)

    async def sessions(self, request: Request) -> Response:
        site = self._admit(request)
        limit = min(_int_param(request, "limit", MAX_SESSIONS_PAGE, 1), MAX_SESSIONS_PAGE)
        offset = _int_param(request, "offset", 0, 0)
        tz = parse_timezone(_param(request, "timezone") or DEFAULT_TIMEZONE)
        now = self._now()
        timeframe = _param(request, "timeframe") or "custom"
        start, end = resolve_window(timeframe, _param(request, "startDate"), _param(request, "endDate"), tz, now)
        window = Window(site, start, end, now)
        pagination = {
            "total": window.total,
            "limit": limit,
            "offset": offset,
            "currentPage": offset // limit + 1,
            "totalPages": -(-window.total // limit),
            "hasMore": offset + limit < window.total,
        }
        return _json(Renderer(tz).sessions_body(window.page(offset, limit), pagination))

    async def activity(self, request: Request) -> Response:
        site = self._admit(request)
        page = _int_param(request, "page", 1, 1)
        limit = min(_int_param(request, "limit", 50, 1), MAX_EVENTS_PAGE)
        order_by = _choice_param(request, "orderBy", ORDER_BY)
        order = _choice_param(request, "order", ORDERS)
        tz = parse_timezone(_param(request, "timezone") or DEFAULT_TIMEZONE)
        session_id = request.path_params["session_id"]
        session = find_session(site, session_id)
        if session is None or not is_visible(session, self._now()):
            raise ApiError(404, f"Session not found: {session_id}")
        events = order_events(session_events(session), order_by, order)
        render = Renderer(tz)
        return _json(
            {
                "events": [render.event(session, e) for e in events[(page - 1) * limit : page * limit]],
                "totalCount": len(events),
                "page": page,
                "pageSize": limit,
                "hasMore": page * limit < len(events),
            }
        )


async def _error_body(_: Request, exc: Exception) -> Response:
    """Every error in Hardal's documented shape, Starlette's own 404 and 405 included."""
    if isinstance(exc, ApiError):
        return _error(exc.status, exc.message, exc.headers)
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, exc.detail, exc.headers)
    return _error(400, str(exc))  # ParamError


_DEFAULT_CONFIG = SandboxConfig()


def create_app(config: SandboxConfig = _DEFAULT_CONFIG) -> Starlette:
    """The fake Hardal API as an ASGI app; mount it, serve it, or call it through an ASGI transport."""
    sandbox = _Sandbox(config)
    return Starlette(
        routes=[
            Route("/api/websites/{website_id}/sessions", sandbox.sessions, methods=["GET"]),
            Route("/api/websites/{website_id}/sessions/{session_id}/activity", sandbox.activity, methods=["GET"]),
        ],
        exception_handlers={ApiError: _error_body, ParamError: _error_body, HTTPException: _error_body},
    )


def serve(host: str = "127.0.0.1", port: int = 8787, config: SandboxConfig = _DEFAULT_CONFIG) -> None:
    """Serve the sandbox until interrupted. Logs go to stderr, so stdout stays free (e.g. for MCP stdio)."""
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    uvicorn.run(create_app(config), host=host, port=port, log_config=log_config)
