"""HTTP layer of the sandbox: Hardal's session routes with its auth, errors, paging and rate limit, the
faults of :mod:`hardal_mcp.sandbox.faults`, and a record of the traffic (:func:`traffic`), which a sandbox
in another process tells loopback clients at ``GET /_sandbox/stats`` (not a Hardal route)."""

from __future__ import annotations

import copy
import hmac
import json
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hardal_mcp.sandbox import faults as f
from hardal_mcp.sandbox.config import SandboxConfig
from hardal_mcp.sandbox.data import (
    DAY_SECONDS,
    Session,
    Site,
    day_count,
    day_date,
    find_session,
    session_events,
    stable_hash,
)
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
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


_REASONS = {
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


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


@dataclass(slots=True)
class Hit:
    """One request to a website, as the sandbox saw it."""

    at: float  # Unix time of arrival
    route: str  # "sessions" or "activity"
    status: int = 0  # the status answered; 0 while the request is being handled (or was abandoned)
    retry_at: float | None = None  # when Retry-After was sent: the Unix time before which a retry is early
    target: str = ""  # path and query string: which session, window, page and options were asked for


MAX_HITS = 10_000  # per website: the most recent requests are kept, so a long-running sandbox stays small
MAX_SERVED = 100_000  # per website with a fault


@dataclass(slots=True)
class SiteTraffic:
    """What one website id was asked and answered."""

    requests: int = 0  # every request ever, counted on arrival
    hits: deque[Hit] = field(default_factory=lambda: deque(maxlen=MAX_HITS))  # the latest requests
    # Only for websites with a fault (the ground truth a test compares with): the sessions answered in
    # readable sessions lists, in order, repeats included. A client that gave up on a slow answer may not
    # have read them.
    served: deque[Session] = field(default_factory=lambda: deque(maxlen=MAX_SERVED))


class Traffic:
    """Requests per website id (by the path's id), counted on arrival: faults and tests read it."""

    def __init__(self) -> None:
        self._sites: dict[str, SiteTraffic] = {}

    def site(self, website_id: str) -> SiteTraffic:
        return self._sites.setdefault(website_id, SiteTraffic())

    def requests(self, website_id: str) -> int:
        site = self._sites.get(website_id)
        return site.requests if site else 0


def traffic(app: Starlette) -> Traffic:
    """The traffic record of an app made by :func:`create_app`."""
    record: Traffic = app.state.traffic
    return record


class _DroppedResponse(Response):
    """Headers with the full ``Content-Length``, then part of the body, then nothing: returning without
    finishing the body makes a server close the connection mid-response."""

    def __init__(self, body: bytes, keep: int, status: int = 200) -> None:
        super().__init__(body, status_code=status, media_type="application/json")
        self._keep = max(0, min(keep, len(body) - 1))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: self._keep], "more_body": True})


Handler = Callable[[Request, int], Awaitable[Response]]


class _Sandbox:
    """The routes and their shared state.

    Endpoints are async on purpose: generation is short CPU work, and staying on the event loop keeps
    the caches, the rate limiter and the traffic record single-threaded.
    """

    def __init__(
        self,
        config: SandboxConfig,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._sleep = sleep  # how a Slow fault waits; tests record it instead of waiting
        limit = config.rate_limit_per_minute
        self._limiter = SlidingWindowLimiter(limit, clock=clock) if limit is not None else None
        self.traffic = Traffic()

    def _now(self) -> datetime:
        return self._config.now or datetime.now(UTC)

    def _admit(self, request: Request) -> Site:
        """Checks shared by every route (key, rate limit, website); returns the site whose data is read."""
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        key = next((k for k in self._config.keys if hmac.compare_digest(presented.strip().encode(), k.encode())), None)
        if scheme.lower() != "bearer" or key is None:
            raise ApiError(401, "Invalid API key")
        if self._limiter is not None:
            wait = self._limiter.acquire(key)
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
        return await self._serve(request, "sessions")

    async def activity(self, request: Request) -> Response:
        return await self._serve(request, "activity")

    async def stats(self, request: Request) -> Response:
        """Per website id, the requests received and the statuses answered to the latest of them (status 0:
        unanswered). Loopback clients only; no key needed, and no key or session data in it."""
        if request.client is None or request.client.host not in _LOOPBACK:
            return _error(404, "Not Found")  # as any unknown path
        body = {
            site: {"requests": record.requests, "statuses": dict(Counter(str(hit.status) for hit in record.hits))}
            for site, record in self.traffic._sites.items()
        }
        return _json(body)

    async def _serve(self, request: Request, route: str) -> Response:
        """Count the request, admit it, let its website's fault act, answer; record the status."""
        website_id = request.path_params["website_id"]
        record = self.traffic.site(website_id)
        n = record.requests
        record.requests += 1
        hit = Hit(time.time(), route, target=f"{request.url.path}?{request.url.query}")
        record.hits.append(hit)
        fault = self._config.fault_for(website_id)
        if fault is not None and not fault.acts_on(n):
            fault = None
        try:
            site = self._admit(request)
            response = await self._answer(request, route, site, fault, n, record, hit)
        except (ApiError, ParamError) as exc:
            response = await _error_body(request, exc)
        hit.status = response.status_code
        return response

    async def _answer(
        self, request: Request, route: str, site: Site, fault: f.Fault | None, n: int, record: SiteTraffic, hit: Hit
    ) -> Response:
        authorization = request.headers.get("authorization", "")
        extra = f.echo(fault, authorization) if fault is not None else ""
        if isinstance(fault, f.Slow):
            await self._sleep(fault.delay)
        elif isinstance(fault, f.ErrorStatus):
            headers, hit.retry_at = f.retry_after_header(fault)
            message = _REASONS.get(fault.status, "Request failed")
            raise ApiError(fault.status, message + extra, headers)
        elif isinstance(fault, f.ProxyPage):
            return Response(f.proxy_page(fault.status, extra), status_code=fault.status, media_type="text/html")

        if route == "activity":
            body = self._activity_body(request, site)
        else:
            data_fault = fault if isinstance(fault, f.DATA_FAULTS) else None
            sessions, body = self._sessions_body(request, site, data_fault, n, extra)
            faulty_site = self._config.fault_for(request.path_params["website_id"]) is not None
            if faulty_site and not isinstance(fault, f.Drop | f.Truncated | f.WrongShape):
                record.served.extend(sessions)

        if isinstance(fault, f.Drop):
            return _DroppedResponse(body.encode(), fault.keep_bytes)
        if isinstance(fault, f.Truncated):
            body = f.truncated(body, fault.keep)
        elif isinstance(fault, f.WrongShape):
            body = f.wrong_shape(body, extra)
        return _json(body)

    def _sessions_body(
        self, request: Request, site: Site, fault: f.Fault | None, n: int, extra: str
    ) -> tuple[list[Session], str]:
        limit = min(_int_param(request, "limit", MAX_SESSIONS_PAGE, 1), MAX_SESSIONS_PAGE)
        offset = _int_param(request, "offset", 0, 0)
        tz = parse_timezone(_param(request, "timezone") or DEFAULT_TIMEZONE)
        now = self._now()
        timeframe = _param(request, "timeframe") or "custom"
        start, end = resolve_window(timeframe, _param(request, "startDate"), _param(request, "endDate"), tz, now)
        window = Window(site, start, end, now)
        sessions, total = _faulty_page(window, offset, limit, fault, n)
        pagination: dict[str, int | bool] = {
            "total": total,
            "limit": limit,
            "offset": offset,
            "currentPage": offset // limit + 1,
            "totalPages": -(-total // limit),
            "hasMore": offset + limit < total,
        }
        if isinstance(fault, f.LyingHasMore):
            pagination["hasMore"] = True
        if isinstance(fault, f.LyingHasMore | f.EmptyPages) and fault.hide_total:
            del pagination["total"], pagination["totalPages"]
        render = Renderer(tz)
        if isinstance(fault, f.Drift):
            items = [f.drift(json.loads(render.session(s)), extra) for s in sessions]
            return sessions, dumps({"sessions": items, "pagination": pagination})
        return sessions, render.sessions_body(sessions, pagination)

    def _activity_body(self, request: Request, site: Site) -> str:
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
        return dumps(
            {
                "events": [render.event(session, e) for e in events[(page - 1) * limit : page * limit]],
                "totalCount": len(events),
                "page": page,
                "pageSize": limit,
                "hasMore": page * limit < len(events),
            }
        )


def _faulty_page(window: Window, offset: int, limit: int, fault: f.Fault | None, n: int) -> tuple[list[Session], int]:
    """One page of the window and the total reported with it, as a data fault changes them."""
    if isinstance(fault, f.EmptyPages) and offset > 0:
        return [], window.total
    if isinstance(fault, f.ShiftingTotal):
        visible = fault.visible(window.total, n)
        count = min(limit, visible - offset)
        return (window.page(offset, count) if count > 0 else []), visible
    if isinstance(fault, f.HeadInserts):
        inserted = _inserted(window, fault.per_request * (n - fault.after + 1))
        head = inserted[offset : offset + limit]
        rest = limit - len(head)
        tail = window.page(max(0, offset - len(inserted)), rest) if rest > 0 else []
        return head + tail, window.total + len(inserted)
    return window.page(offset, limit), window.total


def _inserted(window: Window, count: int) -> list[Session]:
    """``count`` sessions that started after the window's newest one (newest first), made from it."""
    newest = window.page(0, 1)
    if not newest or count <= 0:
        return []
    template = newest[0]
    last = window.end - 1  # the window's last second (`now` included, if the window reaches it)
    out: list[Session] = []
    for i in range(count):
        started = min(template.started + 1 + i, last)
        day = started // DAY_SECONDS
        site = window.site
        index = day_count(site, day) + i  # beyond the day's generated sessions: ids never collide
        tag = stable_hash(site.seed, site.site_id, "inserted", i) % 0x10000
        out.append(
            template._replace(
                id=f"sess_{day_date(day):%Y%m%d}_{index}_{tag:04x}",
                visitor_id=f"v_new_{tag:04x}{i}",
                started=started,
            )
        )
    return out[::-1]


async def _error_body(_: Request, exc: Exception) -> Response:
    """Every error in Hardal's documented shape, Starlette's own 404 and 405 included."""
    if isinstance(exc, ApiError):
        return _error(exc.status, exc.message, exc.headers)
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, exc.detail, exc.headers)
    return _error(400, str(exc))  # ParamError


_DEFAULT_CONFIG = SandboxConfig()


def create_app(
    config: SandboxConfig = _DEFAULT_CONFIG,
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The fake Hardal API as an ASGI app; mount it, serve it, or call it through an ASGI transport.
    ``traffic(app)`` tells what each website id was asked and answered; ``sleep`` is how a ``Slow`` fault
    waits (a test passes one that records the delay instead); ``clock`` is what the rate limit's minute is
    counted on (a test passes one it moves)."""
    sandbox = _Sandbox(config, sleep, clock)
    app = Starlette(
        routes=[
            Route("/api/websites/{website_id}/sessions", sandbox.sessions, methods=["GET"]),
            Route("/api/websites/{website_id}/sessions/{session_id}/activity", sandbox.activity, methods=["GET"]),
            Route("/_sandbox/stats", sandbox.stats, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _error_body},
    )
    app.state.traffic = sandbox.traffic
    return app


def serve(host: str = "127.0.0.1", port: int = 8787, config: SandboxConfig = _DEFAULT_CONFIG) -> None:
    """Serve the sandbox until interrupted. Logs go to stderr, so stdout stays free (e.g. for MCP stdio)."""
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    uvicorn.run(create_app(config), host=host, port=port, log_config=log_config)


@dataclass(frozen=True)
class Running:
    """A sandbox served by :func:`serve_in_thread`."""

    url: str
    app: Starlette


@contextmanager
def serve_in_thread(config: SandboxConfig = _DEFAULT_CONFIG, host: str = "127.0.0.1") -> Iterator[Running]:
    """Serve the sandbox with uvicorn on a free port, in a thread of this process, until the block ends.

    For tests and benchmarks that need a real socket (timeouts, dropped connections) and still want to read
    :func:`traffic`. uvicorn logs only critical messages and leaves the logging configuration alone."""
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=0, log_config=None, log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="hardal-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(f"http://{host}:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
