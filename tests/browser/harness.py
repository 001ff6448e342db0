"""A test host for the MCP Apps dashboard, in headless Chromium (Debian's `chromium`, driven by Playwright).

It plays the host as the ext-apps spec has it: reads `ui://hardal/dashboard` from a running hardal-mcp over MCP
(a client that negotiated the extension), embeds it in a sandboxed iframe of `host.html`, answers the view's
`ui/initialize`, hands it a real tool result, and carries the view's `tools/call` back to the server. Every
message the view sends is validated against the ext-apps schema (an excerpt of the npm package's, beside this
file). The browser reaches nothing: every request it would make is recorded and refused (`Host.requests`).

Used by tests/test_dashboard.py and by `make screenshots` (python -m tests.browser.screenshots).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import jsonschema  # type: ignore[import-untyped]
from mcp.client import Client
from mcp.client.extension import ClientExtension
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult, TextResourceContents
from playwright.async_api import Browser, Frame, Page, async_playwright

from hardal_mcp.apps import DASHBOARD_URI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST_PAGE = (HERE / "host.html").read_text(encoding="utf-8")
SCHEMA = json.loads((HERE / "ext-apps-schema.json").read_text(encoding="utf-8"))["$defs"]
# What the view may send, by method: each definition is a schema of its own.
VIEW_MESSAGES = {
    "ui/initialize": "McpUiInitializeRequest",
    "ui/notifications/initialized": "McpUiInitializedNotification",
    "ui/notifications/size-changed": "McpUiSizeChangedNotification",
    "ui/update-model-context": "McpUiUpdateModelContextRequest",
}
CHROMIUM = os.environ.get("HARDAL_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIGHT = {"--color-background-primary": "#ffffff", "--color-text-primary": "#1b1d21"}
DARK = {"--color-background-primary": "#17181c", "--color-text-primary": "#eceef2"}


class UIExtension(ClientExtension):
    """What a host supporting MCP Apps advertises: the extension, with the app MIME type."""

    identifier = EXTENSION_ID

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def wire(result: CallToolResult) -> dict[str, Any]:
    """A tool result as it travels (camelCase, no nulls): what a host hands the view."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def demo_server() -> Iterator[str]:
    """`hardal-mcp --demo` over streamable HTTP on a loopback port: yields its /mcp URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    with tempfile.TemporaryDirectory() as home:
        env.update(HOME=home, XDG_CACHE_HOME=home)
        proc = subprocess.Popen(
            [sys.executable, "-m", "hardal_mcp", "--demo", "--transport", "http", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"hardal-mcp exited: {proc.stderr.read().decode() if proc.stderr else ''}")
                try:
                    if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("hardal-mcp did not start within 60 s")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Host:
    """One host page with the dashboard in it. `calls` are the view's tools/call (name, arguments) and
    `results` what the server answered them; `requests` every URL the browser tried to fetch."""

    client: Client
    page: Page
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    results: list[CallToolResult] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def html(self) -> str:
        read = await self.client.read_resource(DASHBOARD_URI)
        (content,) = read.contents
        assert isinstance(content, TextResourceContents)
        assert content.mime_type == APP_MIME_TYPE
        return content.text

    async def open(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        result: CallToolResult | None = None,
        theme: str = "light",
        variables: dict[str, str] | None = None,
    ) -> CallToolResult:
        """Calls `tool` (or takes `result`), loads the view and hands it the result; returns the result."""
        if result is None:
            result = await self.client.call_tool(tool, arguments)
        assert not result.is_error, result.content
        tools = {t.name: t for t in (await self.client.list_tools()).tools}
        context = {
            "theme": theme,
            "styles": {"variables": variables if variables is not None else (DARK if theme == "dark" else LIGHT)},
            "displayMode": "inline",
            "availableDisplayModes": ["inline"],
            "locale": "en-US",
            "platform": "web",
            "toolInfo": {"tool": tools[tool].model_dump(mode="json", by_alias=True, exclude_none=True)},
        }
        capabilities = {"serverTools": {}, "logging": {}, "updateModelContext": {"text": {}}}
        config = {
            "html": await self.html(),
            "toolInput": arguments,
            "toolResult": wire(result),
            "context": context,
            "capabilities": capabilities,
        }
        await self.page.evaluate("cfg => window.hostStart(cfg)", config)
        await self.ready()
        return result

    @property
    def frame(self) -> Frame:
        frames = [f for f in self.page.frames if f is not self.page.main_frame]
        assert len(frames) == 1, frames
        return frames[0]

    async def ready(self) -> None:
        """Until the view has drawn its current answer and no call is in flight."""
        await self.page.wait_for_selector("iframe#app")
        await self.frame.wait_for_selector('#app[aria-busy="false"]', state="attached")

    async def set_context(self, partial: dict[str, Any]) -> None:
        await self.page.evaluate("p => window.hostSetContext(p)", partial)

    async def log(self) -> list[dict[str, Any]]:
        return list(await self.page.evaluate("() => window.hostLog"))

    async def check_protocol(self) -> None:
        """Every message the view sent is JSON-RPC 2.0 and, where ext-apps defines it, valid against its schema."""
        for entry in await self.log():
            if entry["dir"] != "app->host":
                continue
            message = entry["message"]
            assert message.get("jsonrpc") == "2.0", message
            method = message.get("method")
            if method in VIEW_MESSAGES:
                schema = SCHEMA[VIEW_MESSAGES[method]]
                body = {k: v for k, v in message.items() if k in ("method", "params")}
                jsonschema.Draft202012Validator(schema).validate(body)
            elif method == "tools/call":
                assert set(message["params"]) <= {"name", "arguments"}, message

    async def _tool_call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, arguments))
        result = await self.client.call_tool(name, arguments)
        self.results.append(result)
        return wire(result)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium through Playwright: never a downloaded browser; Playwright gives it a fresh profile
    (a temporary user-data-dir) each launch."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def host(
    browser: Browser, server: Any, *, width: int = 960, height: int = 900, color_scheme: str = "light"
) -> AsyncIterator[Host]:
    """A host page in a fresh browser context, its MCP client connected to `server` (a URL or an in-process
    server) with the Apps extension negotiated. Any request the browser makes is recorded and refused."""
    async with Client(server, extensions=[UIExtension()]) as client:
        context = await browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,  # type: ignore[arg-type]
            service_workers="block",
        )
        try:
            page = await context.new_page()
            session = Host(client=client, page=page)

            await context.route("**/*", lambda route: route.abort())
            page.on("request", lambda r: session.requests.append(r.url))
            page.on("console", lambda m: session.console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: session.console.append(f"pageerror: {e}"))
            await page.expose_function("hostToolCall", session._tool_call)
            await page.set_content(HOST_PAGE)
            yield session
        finally:
            await context.close()
