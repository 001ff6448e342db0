"""What an operator of `--transport http` sees: logs on stderr (text or one JSON object per line), a start-up
line and an access log (probes left out) that print at every log level, `/readyz`, and the drain that lets
calls in flight finish while new ones are refused.

The access log names the method, the path (never the query string), the status, the milliseconds and the MCP
session id; it never reads a header other than the session id, so no key or token can reach it."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The start-up line and the access log: printed at INFO whatever --log-level says (they are what an operator
# watches), and quieted only by --log-level error.
OPS_LOGGER = "hardal_mcp.http"
log = logging.getLogger(OPS_LOGGER)
PROBES = ("/healthz", "/readyz")  # polled every few seconds by orchestrators: kept out of the access log


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's `fields` (if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Every log line to stderr (stdout is the stdio transport's wire), in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if logging.getLevelName(level.upper()) < logging.ERROR:
        log.setLevel(logging.INFO)


def log_startup(*, host: str, port: int, auth: str, stateless: bool) -> None:
    bound = f"[{host}]" if ":" in host else host
    log.info(
        "hardal-mcp %s serving MCP over streamable HTTP at http://%s:%d/mcp (auth %s%s)",
        __version__,
        bound,
        port,
        auth,
        ", stateless" if stateless else "",
        extra={
            "fields": {
                "event": "start",
                "host": host,
                "port": port,
                "transport": "http",
                "auth": auth,
                "stateless": stateless,
                "version": __version__,
            }
        },
    )


def log_drain(in_flight: int, seconds: float) -> None:
    log.info(
        "draining: refusing new calls; %d in flight, given up to %g s",
        in_flight,
        seconds,
        extra={"fields": {"event": "drain", "in_flight": in_flight, "drain_seconds": seconds}},
    )


class Operations:
    """ASGI middleware around the whole HTTP app: the access log (probes left out), `/readyz`, and the drain.
    `clock` measures the milliseconds (tests inject one).

    `/readyz` answers 503 while Hardal's host could not be reached at the latest try (`upstream_unreachable`)
    and once `drain()` is called. After `drain()`, every new request but a probe or a DELETE (a client ending
    its session) is refused with 503 at once; requests already in flight go on. `in_flight` counts the POSTs
    (the calls) still running, for the server to wait on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        clock: Callable[[], float] = time.monotonic,
        upstream_unreachable: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self._clock = clock
        self._upstream_unreachable = upstream_unreachable
        self.draining = False
        self.in_flight = 0

    def drain(self) -> None:
        self.draining = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] == "/readyz":
            await self._readyz(scope, receive, send)
        elif self.draining and scope["path"] not in PROBES and scope["method"] != "DELETE":
            await self._logged(_refuse_draining, scope, receive, send)
        elif scope["path"] in PROBES:
            await self.app(scope, receive, send)
        elif scope["method"] == "POST":
            self.in_flight += 1
            try:
                await self._logged(self.app, scope, receive, send)
            finally:
                self.in_flight -= 1
        else:
            await self._logged(self.app, scope, receive, send)

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.draining:
            status = "draining"
        elif self._upstream_unreachable():
            status = "upstream unreachable"
        else:
            status = "ready"
        body = {"status": status, "in_flight": self.in_flight}
        await JSONResponse(body, status_code=200 if status == "ready" else 503)(scope, receive, send)

    async def _logged(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        started = self._clock()
        status = 0
        session: str | None = Headers(scope=scope).get("mcp-session-id")

        async def watch(message: Message) -> None:
            nonlocal status, session
            if message["type"] == "http.response.start":
                status = message["status"]
                session = session or Headers(raw=message["headers"]).get("mcp-session-id")
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            _access(scope["method"], scope["path"], status, (self._clock() - started) * 1000, session)


async def _refuse_draining(scope: Scope, receive: Receive, send: Send) -> None:
    error = {"code": -32000, "message": "This server is shutting down; retry, and the next server will answer."}
    body = JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=503, headers={"Retry-After": "1"})
    await body(scope, receive, send)


def _access(method: str, path: str, status: int, ms: float, session: str | None) -> None:
    # status 0: the app failed or the client left before any answer began
    log.info(
        "%s %s %d %.1f ms session=%s",
        method,
        path,
        status,
        ms,
        session or "-",
        extra={
            "fields": {
                "event": "access",
                "method": method,
                "path": path,
                "status": status,
                "ms": round(ms, 1),
                "session": session,
            }
        },
    )
