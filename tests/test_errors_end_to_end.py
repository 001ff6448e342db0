"""Every failure is reported as itself, end to end through a real MCP client (or the `call` CLI): errors that
asking again cannot fix are errors of every tool, whatever task group they met on the way; a spent rate
budget says so, and when nothing could be read it is an error that says when to try again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from hardal_mcp.config import Settings
from hardal_mcp.errors import ConfigError
from hardal_mcp.sandbox import DEMO_API_KEY, SandboxConfig, create_app, faults
from hardal_mcp.sandbox.app import traffic
from hardal_mcp.server import build_server

from .conftest import ROOT, WINDOW, Served, make_settings, sandbox_transport
from .test_http import asgi_client, in_process
from .test_server import text_of

END = date.today() - timedelta(days=5)  # closed days: the sandbox's data for them never changes
MONTH = {"start_date": (END - timedelta(days=29)).isoformat(), "end_date": END.isoformat()}
WIDER = {"start_date": (END - timedelta(days=31)).isoformat(), "end_date": (END - timedelta(days=16)).isoformat()}
STEPS = ["/", "/products*", "/cart"]

# One call of every tool that reads sessions (list_sessions both plainly and through the planner's pager).
READS: list[tuple[str, dict[str, Any]]] = [
    ("list_sessions", {"limit": 3}),
    ("list_sessions", {"limit": 3, "segment": {"country": "Atlantis"}}),  # no match: it scans every page
    ("summarize_sessions", {}),
    ("summarize_sessions", {"compare": "previous_period"}),
    ("analyze_funnel", {"steps": STEPS}),
    ("analyze_paths", {}),
]


@asynccontextmanager
async def connect_to(transport: httpx2.AsyncBaseTransport, **overrides: Any) -> AsyncIterator[Client]:
    server = build_server(make_settings(**overrides), transport=transport)
    async with Client(server) as client:
        yield client


class FailsAfterFirstPage(httpx2.AsyncBaseTransport):
    """The sandbox, except that every page after a window's first answers `status`: an error met while
    several pages are in flight in a task group."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.inner = sandbox_transport(SandboxConfig(sessions_per_day=120))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.params.get("offset", "0") != "0":
            return httpx2.Response(self.status, json={"error": {"message": f"refused with {self.status}"}})
        return await self.inner.handle_async_request(request)


# --- 6: a rejected key is an error of every tool, and of `call` --------------------------------------------


@pytest.mark.parametrize(("tool", "arguments"), [*READS, ("get_session_activity", {"session_id": "s1"})])
async def test_a_rejected_key_is_an_error_of_every_tool(tool: str, arguments: dict[str, Any]) -> None:
    async with connect_to(sandbox_transport(), api_key="wrong-key") as client:
        result = await client.call_tool(tool, {**WINDOW, **arguments})
    assert result.is_error, text_of(result)
    assert text_of(result).startswith("Hardal rejected the API key (HTTP 401")
    assert "Set HARDAL_API_KEY" in text_of(result)
    assert result.structured_content is None  # no page with has_more / next_offset to follow for ever


def test_call_exits_1_on_a_rejected_key(sandbox_server: Served) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    env = {**base, "HARDAL_API_KEY": "wrong-key", "HARDAL_WEBSITE_ID": "demo", "HARDAL_BASE_URL": sandbox_server.url}
    done = subprocess.run(
        [sys.executable, "-m", "hardal_mcp", "call", "list_sessions", "limit=3", 'segment={"country":"Turkey"}'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout
    assert "Hardal rejected the API key (HTTP 401" in done.stdout
    assert "next_offset" not in done.stdout and "wrong-key" not in done.stdout + done.stderr


# --- 7: a remote client is told to present its own key, from every tool -----------------------------------


@pytest.mark.parametrize(("tool", "arguments"), READS)
async def test_passthrough_tells_the_remote_client_to_present_its_key(tool: str, arguments: dict[str, Any]) -> None:
    async with (
        in_process("passthrough", make_settings(api_key=None)) as app,
        asgi_client(app, "junk-key-4711") as http,
        Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client,
    ):
        result = await client.call_tool(tool, {**WINDOW, **arguments})
    assert result.is_error
    assert text_of(result).startswith("Hardal rejected the API key (HTTP 401: Invalid API key): present your")
    assert "as the bearer token" in text_of(result)
    assert "HARDAL_API_KEY" not in text_of(result) and "junk-key-4711" not in text_of(result)


# --- 9: errors of ours leave task groups as themselves ------------------------------------------------------


@pytest.mark.parametrize(("tool", "arguments"), READS[1:])  # a plain list_sessions reads one page
@pytest.mark.parametrize(
    ("status", "said"),
    [(401, "Hardal rejected the API key (HTTP 401: refused with 401)"), (404, "Hardal has no website 'demo'")],
)
async def test_an_error_on_a_later_page_is_the_answer(
    tool: str, arguments: dict[str, Any], status: int, said: str
) -> None:
    """Pages after the first are read several at a time: the 401 or 404 one of them meets is the answer,
    neither an ExceptionGroup nor a partial answer that a retry could not complete."""
    async with connect_to(FailsAfterFirstPage(status), page_size=50, rate_limit=100_000) as client:
        result = await client.call_tool(tool, {**WINDOW, **arguments})
    assert result.is_error, text_of(result)
    assert text_of(result).startswith(said), text_of(result)


@pytest.mark.parametrize(("tool", "arguments"), READS)
async def test_a_bad_base_url_is_a_config_error_of_every_tool(tool: str, arguments: dict[str, Any]) -> None:
    async with connect_to(sandbox_transport(), base_url="http://127.0.0.1:notaport") as client:
        result = await client.call_tool(tool, {**WINDOW, **arguments})
    assert result.is_error
    assert text_of(result).startswith("HARDAL_BASE_URL is not a valid URL (http://127.0.0.1:notaport)")


# --- 10: credentials in the base URL are refused at start-up ------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://gw:gwpass@127.0.0.1:8080", "https://tok3n-xyz@hardal.example/api", "http://u:S3cr3t/PW@127.0.0.1:1"]
)
def test_credentials_in_the_base_url_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HARDAL_BASE_URL": url})
    message = info.value.message
    assert "HARDAL_BASE_URL" in message and "gateway" in message and "not supported" in message
    for secret in ("gwpass", "S3cr3t", "PW", "tok3n-xyz"):
        assert secret not in message


def test_an_at_sign_in_the_base_urls_path_is_no_credential() -> None:
    assert Settings.from_env({"HARDAL_BASE_URL": "https://host.example/@team"}).base_url == "https://host.example/@team"


def test_call_with_credentials_in_the_base_url_fails_at_start_up() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    env = {**base, "HARDAL_API_KEY": DEMO_API_KEY, "HARDAL_BASE_URL": "http://gw:gwpass@127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "hardal_mcp", "call", "list_sessions", "limit=3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "HARDAL_BASE_URL" in done.stderr and "gwpass" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


# --- 8: a budget spent by others: the real reason, and an error when nothing could be read ----------------


async def spend(app: Any, requests: int) -> None:
    """Another process with the same key spends `requests` of the sandbox's minute."""
    transport = httpx2.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {DEMO_API_KEY}"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://sandbox.test", headers=headers) as http:
        for offset in range(requests):
            response = await http.get(
                "/api/websites/other/sessions", params={"timeframe": "yesterday", "limit": 1, "offset": offset}
            )
            assert response.status_code == 200


async def test_a_budget_spent_by_others_is_an_error_that_says_when_to_try_again() -> None:
    app = create_app(SandboxConfig(sessions_per_day=300, rate_limit_per_minute=20, retry_after=True))
    await spend(app, 19)  # the window's first page is the last request the minute allows
    async with connect_to(httpx2.ASGITransport(app=app), page_size=50) as client:
        result = await client.call_tool("summarize_sessions", MONTH)
    assert result.is_error, text_of(result)
    assert "window changed" not in text_of(result)
    assert "rate limit" in text_of(result) and "Try again in" in text_of(result), text_of(result)


# --- a spent budget answers from what is at hand ------------------------------------------------------------


async def test_a_spent_budget_answers_from_the_days_at_hand() -> None:
    """A window most of whose days an earlier sample read: the budget cannot pay to ask the window's total,
    so the answer covers the days at hand, says so, and when a full answer will be possible."""
    sandbox = sandbox_transport(SandboxConfig(sessions_per_day=300))
    async with connect_to(sandbox, page_size=50, rate_limit=60) as client:
        month = await client.call_tool("summarize_sessions", MONTH)  # samples every day; spends the minute
        assert not month.is_error and month.structured_content["coverage"]["sample"]["days"] == 30
        result = await client.call_tool("summarize_sessions", WIDER)  # 14 of its 16 days were sampled
    assert not result.is_error, text_of(result)
    coverage = result.structured_content["coverage"]
    assert coverage["complete"] is False and coverage["total"] is None
    assert "only 14 of the window's 16 days were at hand" in coverage["note"]
    assert "try again in about" in coverage["note"]
    counts = result.structured_content["series"]["counts"]
    assert counts[:2] == [0, 0] and min(counts[2:]) > 0  # the days not at hand are not passed off as read


async def test_a_single_request_refuses_at_once_when_the_budget_cannot_free_up_in_time() -> None:
    """The minute's one request is spent: waiting for the slot would outlast the call's deadline, so the
    call says when to try again instead of waiting the deadline out and then timing out."""
    async with connect_to(sandbox_transport(), rate_limit=1, tool_timeout=20) as client:
        first = await client.call_tool("list_sessions", {**WINDOW, "limit": 3})
        assert not first.is_error, text_of(first)
        second = await client.call_tool("list_sessions", {**WINDOW, "limit": 3, "offset": 3})
    assert second.is_error
    assert "rate budget" in text_of(second) and "try again" in text_of(second)


async def test_with_days_at_hand_the_first_page_waits_for_the_budget_at_most_half_the_call() -> None:
    """A long time limit could wait the minute out, but a window most of whose days are at hand does not
    wait through the call for one request: the answer comes from those days, and says when to ask again."""
    app = create_app(SandboxConfig(sessions_per_day=300))
    async with connect_to(httpx2.ASGITransport(app=app), page_size=50, rate_limit=60, tool_timeout=100) as client:
        month = await client.call_tool("summarize_sessions", {**MONTH, "max_sessions": 2000})
        assert not month.is_error and month.structured_content["coverage"]["sample"]["days"] == 30
        for offset in range(60 - traffic(app).site("demo").requests):  # the rest of the minute goes too
            listed = await client.call_tool("list_sessions", {"timeframe": "yesterday", "limit": 1, "offset": offset})
            assert not listed.is_error, text_of(listed)
        result = await client.call_tool("summarize_sessions", WIDER)
    assert not result.is_error, text_of(result)
    note = result.structured_content["coverage"]["note"]
    assert "only 14 of the window's 16 days were at hand" in note and "try again" in note


async def test_a_segment_scan_that_reads_nothing_is_an_error_not_a_page_to_continue_from() -> None:
    """Hardal asks to wait two minutes before the first page: there is no next_offset to offer (it would be
    the same offset, for ever), only when to try again."""
    config = SandboxConfig(sessions_per_day=120, faults={"*": faults.ErrorStatus(status=429, retry_after=120)})
    async with connect_to(sandbox_transport(config)) as client:
        result = await client.call_tool("list_sessions", {**WINDOW, "segment": {"country": "Turkey"}})
    assert result.is_error, text_of(result)
    assert "Try again in 120 s" in text_of(result) and result.structured_content is None
