"""The MCP tools: typed, bounded, described inputs; a compact text answer plus structured content.
Each tool is a thin adapter over `service.Hardal`; errors become `isError` results here, at one place."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .analytics import Summary
from .errors import HardalError
from .params import Timeframe
from .results import ActivityResult, SessionsResult
from .service import MAX_SESSIONS_CAP, Hardal


@dataclass(frozen=True, slots=True)
class AppState:
    hardal: Hardal


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)

WebsiteId = Annotated[str | None, Field(description="Signal id; default HARDAL_WEBSITE_ID", max_length=128)]
TimeframeArg = Annotated[Timeframe | None, Field(description="Default last7days; custom when start_date is given")]
StartDate = Annotated[str | None, Field(description="YYYY-MM-DD, for custom", max_length=32)]
EndDate = Annotated[str | None, Field(description="YYYY-MM-DD, default today", max_length=32)]
TimezoneArg = Annotated[str | None, Field(description="IANA zone; default HARDAL_TIMEZONE", max_length=64)]
TargetSignal = Annotated[str | None, Field(description="Read another authorized signal's data", max_length=128)]
Hybrid = Annotated[bool, Field(description="Hybrid/self-hosted signal")]


async def list_sessions(
    ctx: Context[AppState],
    website_id: WebsiteId = None,
    timeframe: TimeframeArg = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    timezone: TimezoneArg = None,
    limit: Annotated[int, Field(ge=1, le=200, description="Sessions per page")] = 20,
    offset: Annotated[int, Field(ge=0, le=10_000_000, description="Sessions to skip; use next_offset")] = 0,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, SessionsResult]:
    """One page of sessions, newest first, with every field: visitor, start, duration, pages in order,
    device/browser/OS, country, UTM and custom fields. Use to inspect individual visits after
    summarize_sessions; continue with next_offset."""
    hardal = _hardal(ctx)

    async def run() -> tuple[SessionsResult, str]:
        scope = hardal.scope(website_id, timeframe, start_date, end_date, timezone, target_signal_id, is_hybrid)
        return await hardal.list_sessions(scope, limit=limit, offset=offset)

    return await _answer(run())


async def summarize_sessions(
    ctx: Context[AppState],
    website_id: WebsiteId = None,
    timeframe: TimeframeArg = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    timezone: TimezoneArg = None,
    max_sessions: Annotated[
        int, Field(ge=1, le=MAX_SESSIONS_CAP, description="Sessions to read at most; the digest says if partial")
    ] = 20_000,
    top: Annotated[int, Field(ge=1, le=50, description="Entries per breakdown")] = 10,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, Summary]:
    """Start here. Reads every session in the window and returns one fixed-size digest: totals (sessions,
    visitors, bounce rate, duration), top countries/devices/browsers/OS/UTM and custom fields, landing,
    exit and top pages, common paths, sessions per day (or hour), coverage, and session ids to drill into."""
    hardal = _hardal(ctx)

    async def run() -> tuple[Summary, str]:
        scope = hardal.scope(website_id, timeframe, start_date, end_date, timezone, target_signal_id, is_hybrid)
        return await hardal.summarize(scope, max_sessions=max_sessions, top=top, progress=ctx.report_progress)

    return await _answer(run())


async def get_session_activity(
    ctx: Context[AppState],
    session_id: Annotated[str, Field(description="Session id from list_sessions or a digest", max_length=128)],
    website_id: WebsiteId = None,
    timezone: TimezoneArg = None,
    order: Annotated[Literal["asc", "desc"], Field(description="asc = oldest first")] = "asc",
    page: Annotated[int, Field(ge=1, le=100_000, description="1-based page; use next_page")] = 1,
    limit: Annotated[int, Field(ge=1, le=500, description="Events per page")] = 100,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, ActivityResult]:
    """The timeline of one session: every pageview and event with its time, page and properties.
    Use to see what a specific visitor did."""
    hardal = _hardal(ctx)
    return await _answer(
        hardal.session_activity(
            website_id,
            session_id,
            timezone=timezone,
            order=order,
            page=page,
            limit=limit,
            target_signal_id=target_signal_id,
            is_hybrid=is_hybrid,
        )
    )


TOOLS = (
    (list_sessions, "List sessions"),
    (summarize_sessions, "Summarize sessions"),
    (get_session_activity, "Session activity"),
)


def register(server: MCPServer[AppState]) -> None:
    for fn, title in TOOLS:
        server.add_tool(fn, title=title, annotations=READ_ONLY)


def _hardal(ctx: Context[AppState]) -> Hardal:
    return ctx.request_context.lifespan_context.hardal


async def _answer(work: Awaitable[tuple[BaseModel, str]]) -> CallToolResult:
    """The one boundary where our errors become tool results a model can act on."""
    try:
        result, text = await work
    except HardalError as exc:
        return CallToolResult(content=[TextContent(type="text", text=exc.message)], is_error=True)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json")
    )
