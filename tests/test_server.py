"""hardal-mcp driven through real MCP clients (in memory, stdio, streamable HTTP) against the sandbox."""

from __future__ import annotations

import sys
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from pydantic import TypeAdapter, ValidationError

from hardal_mcp.server import build_server
from hardal_mcp.tools import argument_errors

from .conftest import ROOT, WINDOW, Served, connect, free_port, make_settings, sandbox_transport, spawn, stop

TOOL_NAMES = {"list_sessions", "summarize_sessions", "get_session_activity", "analyze_funnel", "analyze_paths"}


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def all_sessions(client: Client, **window: str) -> list[dict[str, Any]]:
    """Every session of a window, page by page through list_sessions."""
    sessions: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        result = await client.call_tool("list_sessions", {**window, "limit": 200, "offset": offset})
        assert not result.is_error, text_of(result)
        sessions += result.structured_content["sessions"]
        offset = result.structured_content["page"]["next_offset"]
    return sessions


async def test_lists_the_read_only_tools() -> None:
    async with connect() as client:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == TOOL_NAMES
        for tool in tools:
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is True
            assert tool.annotations.idempotent_hint is True
            assert tool.output_schema is not None
            assert tool.description
            for name, prop in tool.input_schema["properties"].items():
                assert prop.get("description"), f"{tool.name}.{name} has no description"


async def test_list_sessions_page_has_every_field_and_pagination() -> None:
    async with connect() as client:
        result = await client.call_tool("list_sessions", {**WINDOW, "limit": 5})
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["window"] == {
            "timeframe": "custom",
            "start": WINDOW["start_date"],
            "end": WINDOW["end_date"],
            "timezone": "Europe/Istanbul",
        }
        assert data["page"]["returned"] == 5 == len(data["sessions"])
        assert data["page"]["offset"] == 0
        assert data["page"]["next_offset"] == 5
        assert data["page"]["has_more"] is True
        assert data["page"]["total"] > 100
        first = data["sessions"][0]
        for field in (
            "id",
            "visitor_id",
            "started_at",
            "duration_s",
            "page_views",
            "events",
            "pages",
            "device",
            "country",
        ):
            assert first[field] not in (None, ""), field
        assert first["started_at"].endswith("+03:00")
        text = text_of(result)
        assert first["id"] in text
        assert WINDOW["start_date"] in text
        assert "Europe/Istanbul" in text
        assert "next_offset=5" in text.replace(" ", "")


async def test_paging_reaches_every_session_once() -> None:
    async with connect() as client:
        sessions = await all_sessions(client, **WINDOW)
        ids = [s["id"] for s in sessions]
        assert len(ids) == len(set(ids))
        first = await client.call_tool("list_sessions", {**WINDOW, "limit": 1})
        assert len(ids) == first.structured_content["page"]["total"]
        starts = [s["started_at"] for s in sessions]
        assert starts == sorted(starts, reverse=True)


async def test_session_activity_matches_the_session() -> None:
    async with connect() as client:
        listed = await client.call_tool("list_sessions", {**WINDOW, "limit": 50})
        session = max(listed.structured_content["sessions"], key=lambda s: s["page_views"])
        result = await client.call_tool("get_session_activity", {"session_id": session["id"]})
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["session_id"] == session["id"]
        assert data["total_events"] == session["events"]
        views = [e["url"] for e in data["events"] if e["type"] == "pageview"]
        assert views == session["pages"][: len(views)]
        times = [e["at"] for e in data["events"]]
        assert times == sorted(times)  # oldest first by default
        assert session["pages"][0] in text_of(result)


async def test_unknown_session_is_an_actionable_error() -> None:
    async with connect() as client:
        result = await client.call_tool("get_session_activity", {"session_id": "sess_nope"})
        assert result.is_error
        assert "sess_nope" in text_of(result)
        assert "404" in text_of(result)


@pytest.mark.parametrize(
    ("arguments", "names"),
    [
        ({"timeframe": "lastweek"}, "timeframe"),
        ({"timeframe": "custom"}, "start_date"),
        ({"start_date": "2026-13-01"}, "start_date"),
        ({"start_date": "2026-11-10", "end_date": "2026-11-01"}, "end_date"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"website_id": "../admin"}, "website_id"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
async def test_bad_arguments_name_the_parameter(arguments: dict[str, Any], names: str) -> None:
    async with connect() as client:
        result = await client.call_tool("list_sessions", arguments)
        assert result.is_error
        # One form whether the schema (the SDK) or our own checks rejected it.
        assert text_of(result).startswith(f"Invalid `{names}`: ")


@pytest.mark.parametrize(
    ("tool", "arguments", "answer"),
    [
        ("list_sessions", {"limit": 201}, "Invalid `limit`: input should be less than or equal to 200."),
        (
            "list_sessions",
            {"limit": "many", "offset": -1},
            "Invalid `limit`: input should be a valid integer, unable to parse string as an integer. "
            "Invalid `offset`: input should be greater than or equal to 0.",
        ),
        ("analyze_funnel", {}, "Invalid `steps`: is required."),
        ("analyze_funnel", {"steps": ["/", ""]}, "Invalid `steps[1]`: string should have at least 1 character."),
        (
            "get_session_activity",
            {"session_id": "sess_x", "order": "sideways"},
            "Invalid `order`: input should be 'asc' or 'desc'.",
        ),
        ("summarize_sessions", {"segment": "mobile"}, "Invalid `segment`: input should be a valid dictionary."),
    ],
)
async def test_schema_violations_answer_like_our_own_input_errors(
    tool: str, arguments: dict[str, Any], answer: str
) -> None:
    # The SDK validates arguments against the schema before the tool runs; its pydantic report ("1 validation
    # error for list_sessionsArguments ... [type=le") must not reach the model.
    async with connect() as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    assert text_of(result) == answer
    for leak in ("validation error", "Arguments", "[type=", "pydantic", "input_value", "Error executing tool"):
        assert leak not in text_of(result)


def test_argument_errors_never_echo_odd_keys_and_stay_short() -> None:
    with pytest.raises(ValidationError) as info:
        TypeAdapter(dict[str, int]).validate_python({"evil`\nkey": "x", "ok_key": "y"})
    assert argument_errors(info.value) == (
        "Invalid `[…]`: input should be a valid integer, unable to parse string as an integer. "
        "Invalid `ok_key`: input should be a valid integer, unable to parse string as an integer."
    )
    with pytest.raises(ValidationError) as info:
        TypeAdapter(list[int]).validate_python(["a"] * 8)
    text = argument_errors(info.value)
    assert text.count("Invalid `") == 5
    assert text.endswith(
        "Invalid `[4]`: input should be a valid integer, unable to parse string as an integer. (3 more.)"
    )


async def test_previous_period_before_year_one_names_start_date() -> None:
    # Used to escape as an OverflowError, which the SDK hides behind "Error executing tool".
    async with connect() as client:
        result = await client.call_tool(
            "summarize_sessions",
            {"start_date": "0001-01-01", "end_date": "0001-01-07", "compare": "previous_period"},
        )
    assert result.is_error
    assert text_of(result).startswith("Invalid `start_date`: 0001-01-01 leaves no room for the previous period")


async def test_missing_key_does_not_crash_and_names_the_variable() -> None:
    server = build_server(make_settings(api_key=None), transport=sandbox_transport())
    async with Client(server) as client:
        for tool, arguments in [
            ("list_sessions", {}),
            ("summarize_sessions", {}),
            ("get_session_activity", {"session_id": "sess_x"}),
        ]:
            result = await client.call_tool(tool, arguments)
            assert result.is_error
            assert "HARDAL_API_KEY" in text_of(result)


async def test_rejected_key_names_the_variable_and_never_echoes_it() -> None:
    server = build_server(make_settings(api_key="wrong-key-4711"), transport=sandbox_transport())
    async with Client(server) as client:
        result = await client.call_tool("list_sessions", {})
    assert result.is_error
    assert "HARDAL_API_KEY" in text_of(result)
    assert "401" in text_of(result)
    assert "wrong-key-4711" not in text_of(result)


async def test_over_stdio_with_demo_data() -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "hardal_mcp", "--demo"], cwd=str(ROOT))
    async with Client(params) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOL_NAMES
        result = await client.call_tool("list_sessions", {"limit": 3})
        assert not result.is_error, text_of(result)
        assert result.structured_content["page"]["returned"] == 3


async def test_over_streamable_http_against_the_sandbox_on_loopback(sandbox_server: Served) -> None:
    port = free_port()
    server = spawn(
        ["--transport", "http", "--port", str(port)],
        port,
        env={"HARDAL_API_KEY": "demo-key", "HARDAL_WEBSITE_ID": "demo", "HARDAL_BASE_URL": sandbox_server.url},
    )
    try:
        async with Client(f"{server.url}/mcp") as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOL_NAMES
            result = await client.call_tool("list_sessions", {**WINDOW, "limit": 4})
            assert not result.is_error, text_of(result)
            assert result.structured_content["page"]["returned"] == 4
        async with httpx2.AsyncClient() as http:  # DNS-rebinding protection stays on
            response = await http.post(f"{server.url}/mcp", headers={"Host": "evil.example"}, json={})
            assert response.status_code == 421
    finally:
        stop(server)


async def test_session_activity_can_be_sorted_by_name() -> None:
    async with connect() as client:
        listed = await client.call_tool("list_sessions", {**WINDOW, "limit": 50})
        session = max(listed.structured_content["sessions"], key=lambda s: s["events"])
        result = await client.call_tool(
            "get_session_activity", {"session_id": session["id"], "order_by": "name", "order": "desc"}
        )
    assert not result.is_error, text_of(result)
    names = [e["name"] for e in result.structured_content["events"]]
    assert len(set(names)) > 1
    assert names == sorted(names, reverse=True)
