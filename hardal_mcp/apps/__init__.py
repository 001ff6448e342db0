"""The MCP Apps dashboard (`io.modelcontextprotocol/ui`): one self-contained HTML view, `ui://hardal/dashboard`,
that hosts supporting the extension show beside the answers of summarize_sessions, analyze_funnel and
analyze_paths. It renders the tool result's structured content (no second request) and asks for more (another
period, a segment, a funnel step's paths) through the host's `tools/call`, never the network.

Nothing here changes a tool's answer: a host that did not negotiate the extension gets the same text and
structured content; what every client sees more is the tools' `_meta.ui.resourceUri` and the resource itself.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files
from typing import Any

from mcp.server.apps import Apps, ResourceCsp

DASHBOARD_URI = "ui://hardal/dashboard"
UI_TOOLS = frozenset({"summarize_sessions", "analyze_funnel", "analyze_paths"})
MAX_HTML_BYTES = 150_000

_BLOCK = {
    "SCRIPT": re.compile(r"<script>(.*?)</script>", re.DOTALL),
    "STYLE": re.compile(r"<style>(.*?)</style>", re.DOTALL),
}


def tool_meta(name: str) -> dict[str, Any] | None:
    """The `_meta` a tool is published with: the dashboard's URI for the tools it has a view of."""
    return {"ui": {"resourceUri": DASHBOARD_URI}} if name in UI_TOOLS else None


@cache
def dashboard_html() -> str:
    """The dashboard as served: its one inline script and one inline style allowed by their SHA-256 in the
    page's own Content-Security-Policy, which allows nothing else (no origin at all, no other inline code)."""
    html = files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")
    for name, block in _BLOCK.items():
        found = block.findall(html)
        if len(found) != 1:
            raise RuntimeError(f"dashboard.html must hold exactly one inline <{name.lower()}>, found {len(found)}")
        digest = base64.b64encode(hashlib.sha256(found[0].encode("utf-8")).digest()).decode()
        html = html.replace(f"@{name}_HASH@", f"'sha256-{digest}'")
    return html


def extension() -> Apps:
    """The MCP Apps extension with the dashboard resource; the tools carry their `_meta` themselves (`tool_meta`),
    so that they keep the compacted schemas every conversation pays for."""
    apps = Apps()
    apps.add_html_resource(
        DASHBOARD_URI,
        dashboard_html(),
        name="dashboard",
        title="Hardal sessions dashboard",
        description="Charts and ranked lists of a summarize_sessions, analyze_funnel or analyze_paths answer",
        csp=ResourceCsp(),  # empty: no origin may be reached, not even for fonts or images
        prefers_border=True,
    )
    return apps
