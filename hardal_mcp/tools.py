"""The MCP tools: typed, bounded, described inputs; a compact text answer plus structured content.
Each tool is a thin adapter over `service.Hardal`; errors become `isError` results here, at one place."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, SecretStr, ValidationError

from .analytics import FunnelResult, PathResult, Segment
from .apps import tool_meta
from .errors import AuthError, HardalError, InputError, own_errors
from .keys import presented
from .oauth.provider import HardalAccessToken
from .params import Order, OrderBy, Timeframe
from .results import ActivityResult, SessionsResult
from .service import MAX_SESSIONS_CAP, Hardal, SummaryResult


@dataclass(frozen=True, slots=True)
class AppState:
    hardal: Hardal
    passthrough: bool = False  # hosted mode: each request's bearer token is its Hardal API key
    # --auth oauth: ends every authorization of a key Hardal refuses (401); None in the other modes
    revoke_key: Callable[[SecretStr], Awaitable[int]] | None = None


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)

WebsiteId = Annotated[str | None, Field(description="Signal id; default HARDAL_WEBSITE_ID", max_length=128)]
TimeframeArg = Annotated[Timeframe | None, Field(description="Default last7days; custom if start_date given")]
StartDate = Annotated[str | None, Field(description="YYYY-MM-DD; omit for a timeframe preset", max_length=32)]
EndDate = Annotated[str | None, Field(description="YYYY-MM-DD; default today", max_length=32)]
TimezoneArg = Annotated[str | None, Field(description="IANA zone; default HARDAL_TIMEZONE", max_length=64)]
TargetSignal = Annotated[
    str | None, Field(description="Read another authorized signal; default website_id", max_length=128)
]
Hybrid = Annotated[bool, Field(description="Hybrid/self-hosted signal")]
SegmentArg = Annotated[
    dict[str, Any] | None,
    Field(
        description="Filter, all keys ANDed; omit for all sessions. country, device, browser, os (value or list, "
        'any case); fields {"utm_source":"google"}; visited, not_visited, landing_page, exit_page (page '
        "patterns, * wildcard); min_duration, max_duration (s); min_pageviews; bounced, returning (bool)"
    ),
]
MaxSessions = Annotated[
    int, Field(ge=1, le=MAX_SESSIONS_CAP, description="Sessions to read at most; more: sampled over every day")
]
Top = Annotated[int, Field(ge=1, le=50, description="Entries per list")]


async def list_sessions(
    ctx: Context[AppState],
    website_id: WebsiteId = None,
    timeframe: TimeframeArg = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    timezone: TimezoneArg = None,
    limit: Annotated[int, Field(ge=1, le=200, description="Sessions per page")] = 20,
    offset: Annotated[int, Field(ge=0, le=10_000_000, description="Position to start at; use next_offset")] = 0,
    segment: SegmentArg = None,
    max_scan: Annotated[int, Field(ge=1, le=50_000, description="With segment: sessions to examine at most")] = 5000,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, SessionsResult]:
    """Individual sessions, newest first, every field: visitor, start, duration, pages in order,
    device/browser/OS, country, UTM/custom fields. With segment, only matches. Continue with next_offset."""
    hardal = _hardal(ctx)

    async def run() -> tuple[SessionsResult, str]:
        scope = hardal.scope(website_id, timeframe, start_date, end_date, timezone, target_signal_id, is_hybrid)
        chosen = Segment.parse(segment)
        return await hardal.list_sessions(scope, limit=limit, offset=offset, segment=chosen, max_scan=max_scan)

    return await _answer(run(), ctx)


async def summarize_sessions(
    ctx: Context[AppState],
    website_id: WebsiteId = None,
    timeframe: TimeframeArg = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    timezone: TimezoneArg = None,
    segment: SegmentArg = None,
    compare: Annotated[
        Literal["previous_period"] | None,
        Field(description="Also digest the equal period before and report changes; omit for none"),
    ] = None,
    max_sessions: MaxSessions = 100_000,
    top: Top = 10,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, SummaryResult]:
    """Start here. One fixed-size digest of every session in the window: totals (visitors, bounce,
    duration), top countries/devices/browsers/OS/UTM/fields, landing/exit/top pages, paths, per-day
    trend, coverage, ids to drill into. compare="previous_period" explains what changed. Windows too big
    to read within the rate limit are sampled evenly: exact totals, other figures ± 95% margins."""
    hardal = _hardal(ctx)

    async def run() -> tuple[SummaryResult, str]:
        scope = hardal.scope(website_id, timeframe, start_date, end_date, timezone, target_signal_id, is_hybrid)
        return await hardal.summarize(
            scope,
            max_sessions=max_sessions,
            top=top,
            segment=Segment.parse(segment),
            compare=compare is not None,
            progress=ctx.report_progress,
        )

    return await _answer(run(), ctx)


async def analyze_funnel(
    ctx: Context[AppState],
    steps: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]],
        Field(
            min_length=2, max_length=10, description='Page patterns in order, * wildcard: ["/", "/cart", "/checkout*"]'
        ),
    ],
    breakdown: Annotated[
        str | None,
        Field(
            description="Per group of country, device, browser, os or a field key (utm_source); omit for none",
            max_length=64,
        ),
    ] = None,
    website_id: WebsiteId = None,
    timeframe: TimeframeArg = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    timezone: TimezoneArg = None,
    segment: SegmentArg = None,
    max_sessions: MaxSessions = 100_000,
    top: Top = 5,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, FunnelResult]:
    """Conversion through ordered page steps (other pages in between allowed): sessions per step,
    step and overall conversion, the worst drop-off with example session ids, optional breakdown."""
    hardal = _hardal(ctx)

    async def run() -> tuple[FunnelResult, str]:
        scope = hardal.scope(website_id, timeframe, start_date, end_date, timezone, target_signal_id, is_hybrid)
        return await hardal.funnel(
            scope,
            steps,
            breakdown=breakdown,
            top=top,
            segment=Segment.parse(segment),
            max_sessions=max_sessions,
            progress=ctx.report_progress,
        )

    return await _answer(run(), ctx)


async def analyze_paths(
    ctx: Context[AppState],
    page: Annotated[
        str | None,
        Field(description="Page pattern (* wildcard); omit for entry→exit flows and whole paths", max_length=200),
    ] = None,
    website_id: WebsiteId = None,
    timeframe: TimeframeArg = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    timezone: TimezoneArg = None,
    segment: SegmentArg = None,
    max_sessions: MaxSessions = 100_000,
    top: Top = 10,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, PathResult]:
    """Navigation around a page: top previous and next pages, incl. entered/exited there. Without page:
    top landing→exit flows and most common whole paths."""
    hardal = _hardal(ctx)

    async def run() -> tuple[PathResult, str]:
        scope = hardal.scope(website_id, timeframe, start_date, end_date, timezone, target_signal_id, is_hybrid)
        return await hardal.paths(
            scope,
            page,
            top=top,
            segment=Segment.parse(segment),
            max_sessions=max_sessions,
            progress=ctx.report_progress,
        )

    return await _answer(run(), ctx)


async def get_session_activity(
    ctx: Context[AppState],
    session_id: Annotated[str, Field(description="From list_sessions or a digest", max_length=128)],
    website_id: WebsiteId = None,
    timezone: TimezoneArg = None,
    order: Annotated[Order, Field(description="asc = oldest first")] = "asc",
    order_by: Annotated[OrderBy, Field(description="Sort key")] = "timestamp",
    page: Annotated[int, Field(ge=1, le=100_000, description="1-based; use next_page")] = 1,
    limit: Annotated[int, Field(ge=1, le=500, description="Events per page")] = 100,
    target_signal_id: TargetSignal = None,
    is_hybrid: Hybrid = False,
) -> Annotated[CallToolResult, ActivityResult]:
    """One session's timeline: every pageview and event with time, page and properties. Use to see what
    one visitor did; session ids come from list_sessions and the digests' examples."""
    hardal = _hardal(ctx)
    return await _answer(
        hardal.session_activity(
            website_id,
            session_id,
            timezone=timezone,
            order=order,
            order_by=order_by,
            page=page,
            limit=limit,
            target_signal_id=target_signal_id,
            is_hybrid=is_hybrid,
        ),
        ctx,
    )


# (function, title, depth of its published output schema). Rows of sessions and events are the payload
# and are typed field by field; the digests' nested parts are explained by their text.
TOOLS = (
    (summarize_sessions, "Summarize sessions", 1),
    (list_sessions, "List sessions", 2),
    (get_session_activity, "Session activity", 2),
    (analyze_funnel, "Analyze a funnel", 1),
    (analyze_paths, "Analyze paths", 1),
)


def tools() -> list[Tool]:
    """The tools, with schemas compacted: every token of tools/list is paid by every conversation."""
    built = []
    for fn, title, depth in TOOLS:
        # One line: docstring indentation and line breaks are tokens too.
        description = " ".join((fn.__doc__ or "").split())
        tool = HardalTool.from_function(
            fn, title=title, description=description, annotations=READ_ONLY, meta=tool_meta(fn.__name__)
        )
        tool.parameters = compact_schema(tool.parameters, output=False)
        if tool.fn_metadata.output_schema is not None:
            shape = limit_depth(tool.fn_metadata.output_schema, depth)
            tool.fn_metadata.output_schema = compact_schema(shape, output=True)
        built.append(tool)
    return built


def limit_depth(schema: dict[str, Any], depth: int) -> dict[str, Any]:
    """`schema` with its `$ref`s inlined and objects nested deeper than `depth` levels left untyped inside
    (`{"type": "object"}`). Still true of every result, in a fraction of the tokens."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, level: int) -> Any:
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        out = {k: v for k, v in node.items() if k != "$defs"}
        if "properties" in out:
            if level == depth:
                return {"type": "object"}
            out["properties"] = {name: walk(sub, level + 1) for name, sub in out["properties"].items()}
        if "items" in out:
            out["items"] = walk(out["items"], level)
        if "anyOf" in out:
            out["anyOf"] = [walk(option, level) for option in out["anyOf"]]
        return out

    return walk(schema, 0)  # type: ignore[no-any-return]


# Keywords an output schema can do without: the text content explains the result to the model, and the
# server validates structured content against the pydantic model itself.
_OUTPUT_ONLY_DOCS = frozenset({"title", "description", "default", "required"})


def compact_schema(schema: Any, *, output: bool) -> Any:
    """The same JSON Schema in fewer tokens. Titles go; `anyOf` of bare types becomes a type list; an
    optional input's `null` goes (omitting it means the same); output schemas keep only the shape."""
    if isinstance(schema, list):
        return [compact_schema(item, output=output) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (output and key in _OUTPUT_ONLY_DOCS) or (key == "default" and value is None):
            continue
        if key == "properties":  # property names are data, not keywords
            out[key] = {name: compact_schema(sub, output=output) for name, sub in value.items()}
        else:
            out[key] = compact_schema(value, output=output)
    options = out.get("anyOf")
    if isinstance(options, list) and all(isinstance(o, dict) and set(o) == {"type"} for o in options):
        del out["anyOf"]
        out["type"] = [o["type"] for o in options]
    elif isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = options[1 - options.index({"type": "null"})]
        if isinstance(other.get("type"), str):
            del out["anyOf"]
            out.update({**other, "type": [other["type"], "null"]})
    if not output and "properties" in out:
        required = set(out.get("required", ()))
        for name, sub in out["properties"].items():
            kinds = sub.get("type")
            if name not in required and isinstance(kinds, list) and "null" in kinds:
                rest = [k for k in kinds if k != "null"]
                sub["type"] = rest[0] if len(rest) == 1 else rest
    return out


def _hardal(ctx: Context[AppState]) -> Hardal:
    state = ctx.request_context.lifespan_context
    if state.revoke_key is not None:  # --auth oauth: the key the verified token stands for, and only it
        token = get_access_token()
        if not isinstance(token, HardalAccessToken):
            return state.hardal.for_key(None)
        hardal = state.hardal
        if token.website_id:  # the default website the person chose on the consent page
            settings = hardal.settings.model_copy(update={"website_id": token.website_id})
            hardal = Hardal(settings, hardal.client, store=hardal.store, background=hardal.background)
        return hardal.for_key(token.key)
    if not state.passthrough:
        return state.hardal
    token = get_access_token()
    return state.hardal.for_key(presented(token.token if token else None))


class HardalTool(Tool):
    """A tool whose rejected arguments are reported like our own InputError (`Invalid `limit`: …`), not
    as pydantic's multi-line report with the arguments model's name, error types and URLs."""

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            # Still caused by the ValidationError: the SDK then logs the rejected field names only.
            raise ToolError(argument_errors(cause)) from cause


_MAX_REPORTED = 5  # argument errors named in one answer
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def argument_errors(error: ValidationError) -> str:
    """The arguments' validation errors, one `Invalid `parameter`: problem.` sentence each."""
    items = error.errors(include_url=False, include_context=False, include_input=False)
    sentences = []
    for item in items[:_MAX_REPORTED]:
        parameter = _parameter(item["loc"])
        if item["type"] == "missing":
            problem = "is required."
        else:
            msg = " ".join(item["msg"].split())[:200]
            problem = msg[:1].lower() + msg[1:] + ("" if msg.endswith(".") else ".")
        sentences.append(InputError(parameter, problem).message)
    if len(items) > _MAX_REPORTED:
        sentences.append(f"({len(items) - _MAX_REPORTED} more.)")
    return " ".join(sentences)


def _parameter(loc: tuple[int | str, ...]) -> str:
    """`steps[1]`, `segment.country`; a part that is not a plain name (caller's data) shows as `[…]`."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif _NAME.fullmatch(part):
            name += f".{part}" if name else part
        else:
            name += "[…]"
    return name or "arguments"


_BEARER = "Authorization: Bearer <key>; Hardal dashboard: signal → Settings → Security → API Keys"
_HARDAL_SAID = re.compile(r"\(HTTP 401[^()]*\)")


def _for_remote_client(exc: HardalError) -> str:
    """Passthrough (hosted) mode: the key is the client's bearer token, so the fix is on the client's side,
    not in the server's environment (the messages below name HARDAL_API_KEY for the local case)."""
    if isinstance(exc, AuthError) and exc.status is None:
        return f"No Hardal API key came with the request: present your Hardal API key as the bearer token ({_BEARER})."
    if isinstance(exc, AuthError) and exc.status == 401:
        said = _HARDAL_SAID.search(exc.message)
        return (
            f"Hardal rejected the API key {said.group(0) if said else '(HTTP 401)'}: present your Hardal API key "
            f"as the bearer token ({_BEARER})."
        )
    return exc.message


async def _for_oauth_client(exc: HardalError, revoke_key: Callable[[SecretStr], Awaitable[int]]) -> str:
    """--auth oauth: a key Hardal now refuses (401) ends its authorizations; the person signs in again."""
    token = get_access_token()
    if isinstance(exc, AuthError) and exc.status == 401 and isinstance(token, HardalAccessToken):
        await revoke_key(token.key)
        return (
            "Hardal rejected the API key given when this app was connected (HTTP 401), so that connection was "
            "ended: reconnect the app and enter a valid key."
        )
    return exc.message


async def _answer(work: Awaitable[tuple[BaseModel, str]], ctx: Context[AppState]) -> CallToolResult:
    """The one boundary where our errors become tool results a model can act on (also when a task group
    on the way collected them)."""
    try:
        with own_errors():
            result, text = await work
    except HardalError as exc:
        state = ctx.request_context.lifespan_context
        if state.revoke_key is not None:
            message = await _for_oauth_client(exc, state.revoke_key)
        else:
            message = _for_remote_client(exc) if state.passthrough else exc.message
        return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json")
    )
