"""What the MCP Apps dashboard costs: tools/list tokens with and without the `_meta` it adds (cl100k, as
bench.context counts tools/list), and the size of the HTML a host reads once.

    python -m bench.apps
"""

from __future__ import annotations

import asyncio
import gzip

import httpx2
from mcp.client import Client
from mcp.types import ListToolsResult

from hardal_mcp.apps import MAX_HTML_BYTES, dashboard_html
from hardal_mcp.config import Settings
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig, create_app
from hardal_mcp.server import build_server

from .context import SANDBOX_URL, tools_tokens


async def listed() -> ListToolsResult:
    settings = Settings.model_validate(
        {"api_key": DEMO_API_KEY, "website_id": DEMO_WEBSITE_ID, "base_url": SANDBOX_URL, "store": "off"}
    )
    transport = httpx2.ASGITransport(app=create_app(SandboxConfig(sessions_per_day=10)))
    async with Client(build_server(settings, transport=transport)) as client:
        return await client.list_tools()


def main() -> None:
    tools = asyncio.run(listed())
    bare = tools.model_copy(update={"tools": [t.model_copy(update={"meta": None}) for t in tools.tools]})
    with_meta, without = tools_tokens(tools), tools_tokens(bare)
    bound = [t.name for t in tools.tools if t.meta]
    html = dashboard_html().encode("utf-8")
    added = with_meta - without
    print(f"tools/list tokens: {with_meta:,} ({without:,} without _meta: +{added} for {len(bound)} tools)")
    print(f"dashboard HTML: {len(html):,} bytes ({len(gzip.compress(html)):,} gzipped), limit {MAX_HTML_BYTES:,}")


if __name__ == "__main__":
    main()
