"""The operator's view of `--transport http`: the start-up line, the access log (text and JSON), `/readyz`.
Real `hardal-mcp` processes on loopback, or the HTTP app in process behind an ASGI transport."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hardal_mcp import __version__
from hardal_mcp.metrics import Metrics
from hardal_mcp.operations import OPS_LOGGER
from hardal_mcp.sandbox import DEMO_API_KEY, SandboxConfig, faults
from hardal_mcp.server import build_server, http_app

from .conftest import WINDOW, Served, free_port, make_settings, sandbox_transport, spawn, stop
from .test_http import asgi_client, bearer, in_process, running
from .test_server import text_of

TOKEN = "mcp-token-for-operations-0123456789"


@asynccontextmanager
async def served(args: list[str], env: dict[str, str]) -> AsyncIterator[tuple[Served, list[str]]]:
    """A `hardal-mcp --transport http` process; after the block, the list holds its stderr lines (it is
    stopped first, so every line it wrote is there)."""
    port = free_port()
    server = spawn(["--transport", "http", "--port", str(port), *args], port, env=env)
    lines: list[str] = []
    try:
        yield server, lines
    finally:
        server.proc.terminate()
        try:
            _, err = server.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            _, err = server.proc.communicate()
        lines.extend(err.decode().splitlines())


async def test_the_start_up_line_names_address_port_transport_auth_and_version_at_the_default_level() -> None:
    async with served(["--demo"], {"HARDAL_MCP_TOKEN": TOKEN}) as (server, lines):
        port = server.url.rsplit(":", 1)[1]
    [line] = [line for line in lines if "serving MCP" in line]
    assert f"hardal-mcp {__version__} serving MCP over streamable HTTP at http://127.0.0.1:{port}/mcp" in line
    assert "(auth token)" in line
    assert TOKEN not in "\n".join(lines)


async def test_json_logs_are_one_object_a_line_with_the_access_fields_and_no_secret() -> None:
    async with served(["--demo", "--log-format", "json"], {"HARDAL_MCP_TOKEN": TOKEN}) as (server, lines):
        url = f"{server.url}/mcp"
        async with bearer(TOKEN) as http, Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool("list_sessions", {"limit": 2})
            assert not result.is_error, text_of(result)
        async with httpx2.AsyncClient() as http:  # a secret in a query string and a refused token
            refused = await http.get(f"{server.url}/mcp?api_key={DEMO_API_KEY}", headers={"Authorization": "Bearer x"})
            assert refused.status_code == 401
    entries = [json.loads(line) for line in lines]  # every line parses: nothing else is printed
    [start] = [e for e in entries if e.get("event") == "start"]
    assert start | {"port": 0} == start | {
        "host": "127.0.0.1",
        "port": 0,
        "transport": "http",
        "auth": "token",
        "stateless": False,
        "version": __version__,
    }
    access = [e for e in entries if e.get("event") == "access"]
    calls = [e for e in access if e["method"] == "POST" and e["status"] == 200]
    assert calls, access
    assert all(e["path"] == "/mcp" and isinstance(e["ms"], float) and "session" in e for e in calls)
    assert {"method": "GET", "path": "/mcp", "status": 401, "session": None}.items() <= access[-1].items()
    everything = "\n".join(lines)
    assert TOKEN not in everything
    assert DEMO_API_KEY not in everything
    assert "api_key" not in everything


class Ticks:
    """A clock that moves 12.5 ms a reading."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.0125
        return self.now


async def test_the_text_access_log_names_method_path_status_milliseconds_and_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=OPS_LOGGER)
    async with in_process("none", clock=Ticks()) as app, asgi_client(app) as http:
        opened = await http.post(
            "/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            },
            headers={"Accept": "application/json, text/event-stream"},
        )
        session = opened.headers["mcp-session-id"]
        await http.get("/nowhere?secret=yes")
        await http.get("/healthz")  # probes are not logged
        await http.get("/readyz")
    messages = [r.getMessage() for r in caplog.records if getattr(r, "fields", {}).get("event") == "access"]
    assert messages == [f"POST /mcp 200 12.5 ms session={session}", "GET /nowhere 404 12.5 ms session=-"]


async def test_readyz_answers_ready_and_healthz_is_unchanged() -> None:
    async with in_process("none") as app, asgi_client(app) as http:
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (200, "ready")
        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok", "version": __version__})


async def test_a_draining_server_is_not_ready_and_refuses_new_calls_but_answers_health() -> None:
    async with in_process("none") as app, asgi_client(app) as http:
        app.drain()  # type: ignore[attr-defined]  # in_process yields the Operations app as a plain ASGIApp
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (503, {"status": "draining", "in_flight": 0})
        call = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert call.status_code == 503
        assert "shutting down" in call.json()["error"]["message"]
        assert (await http.get("/healthz")).status_code == 200


async def _ready(http: httpx2.AsyncClient, url: str, in_flight: int) -> httpx2.Response:
    """Poll /readyz until it counts `in_flight` calls (waiting for an event, not for a time)."""
    while True:
        ready = await http.get(f"{url}/readyz")
        if ready.json()["in_flight"] == in_flight:
            return ready
        await anyio.sleep(0.02)


async def test_sigterm_lets_the_call_in_flight_finish_and_refuses_new_ones_at_once() -> None:
    port = free_port()
    sandbox = spawn(["sandbox", "--port", str(port), "--fault", "slow-after-first"], port)  # 5 s after the first
    env = {"HARDAL_BASE_URL": sandbox.url, "HARDAL_API_KEY": "demo-key", "HARDAL_WEBSITE_ID": "demo"}
    try:
        async with served(["--drain-seconds", "60"], env) as (server, lines), httpx2.AsyncClient() as probe:
            url = f"{server.url}/mcp"
            async with (
                httpx2.AsyncClient(timeout=60) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                assert not (await client.call_tool("list_sessions", {"limit": 1})).is_error  # the quick first
                results: list[Any] = []

                async def slow_call() -> None:
                    results.append(await client.call_tool("list_sessions", {**WINDOW, "limit": 2}))

                async with anyio.create_task_group() as group:
                    group.start_soon(slow_call)
                    await _ready(probe, server.url, 1)
                    server.proc.send_signal(signal.SIGTERM)
                    assert (await _ready(probe, server.url, 1)).status_code == 503  # at once, while it runs
                    refused = await probe.post(url, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
                    assert refused.status_code == 503
            [result] = results
            assert not result.is_error, text_of(result)
            assert result.structured_content["page"]["returned"] == 2
            assert server.proc.wait(timeout=30) == -signal.SIGTERM
        assert any("draining: refusing new calls; 1 in flight, given up to 60 s" in line for line in lines)
    finally:
        stop(sandbox)


async def _no_wait(_: float) -> None:
    pass


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_tool_calls_upstream_statuses_429s_cache_hits_and_budget_without_keys() -> None:
    settings = make_settings()
    metrics = Metrics()
    config = SandboxConfig(sessions_per_day=120, faults={"*": faults.ErrorStatus(status=429, retry_after=1, times=1)})
    server = build_server(settings, transport=sandbox_transport(config), sleep=_no_wait, metrics=metrics)
    async with running(http_app(server, settings, auth="none", stateless=False)) as app, asgi_client(app) as http:
        url = "http://127.0.0.1:8000/mcp"
        async with Client(streamable_http_client(url, http_client=http)) as client:
            for _ in range(2):  # the second is answered from the response cache
                assert not (await client.call_tool("list_sessions", {**WINDOW, "limit": 2})).is_error
            assert (await client.call_tool("no_such_tool", {})).is_error
        scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = _samples(scraped.text)
    assert samples[("hardal_mcp_tool_calls_total", (("outcome", "ok"), ("tool", "list_sessions")))] == 2
    assert samples[("hardal_mcp_tool_calls_total", (("outcome", "error"), ("tool", "unknown")))] == 1
    assert samples[("hardal_mcp_tool_call_seconds_count", (("tool", "list_sessions"),))] == 2
    assert samples[("hardal_mcp_upstream_requests_total", (("status", "429"),))] == 1
    assert samples[("hardal_mcp_upstream_requests_total", (("status", "200"),))] >= 1
    assert samples[("hardal_mcp_upstream_rate_limited_total", ())] == 1
    assert samples[("hardal_mcp_cache_lookups_total", (("cache", "response"), ("result", "hit")))] >= 1
    assert 0 <= samples[("hardal_mcp_rate_budget_available", ())] <= settings.rate_limit
    assert DEMO_API_KEY not in scraped.text
    assert "no_such_tool" not in scraped.text  # a typed name never becomes a label


async def test_metrics_are_off_unless_enabled() -> None:
    async with in_process("none") as app, asgi_client(app) as http:
        assert (await http.get("/metrics")).status_code == 404


async def test_metrics_count_day_store_hits_and_misses(tmp_path: Path) -> None:
    metrics = Metrics()
    settings = make_settings(store=str(tmp_path / "days.db"))
    async with Client(build_server(settings, transport=sandbox_transport(), metrics=metrics)) as client:
        for _ in range(2):  # the first stores the window's closed days, the second reads them back
            assert not (await client.call_tool("summarize_sessions", WINDOW)).is_error
    samples = _samples(generate_latest(metrics.registry).decode())
    days = samples[("hardal_mcp_cache_lookups_total", (("cache", "store"), ("result", "miss")))]
    assert days > 0
    assert samples[("hardal_mcp_cache_lookups_total", (("cache", "store"), ("result", "hit")))] == days


async def test_the_metrics_flag_serves_metrics_over_http() -> None:
    async with served(["--demo", "--metrics"], {}) as (server, _), httpx2.AsyncClient() as http:
        scraped = await http.get(f"{server.url}/metrics")
    assert scraped.status_code == 200
    assert "# TYPE hardal_mcp_tool_calls_total counter" in scraped.text.splitlines()


class Outage(httpx2.AsyncBaseTransport):
    """Hardal's host: the sandbox, or, while `down`, a connection refused."""

    def __init__(self) -> None:
        self.down = True
        self.sandbox = sandbox_transport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.down:
            raise httpx2.ConnectError("connection refused", request=request)
        return await self.sandbox.handle_async_request(request)


async def test_readyz_answers_503_while_hardal_is_known_unreachable() -> None:
    settings = make_settings()
    outage = Outage()
    server = build_server(settings, transport=outage, sleep=_no_wait)
    async with running(http_app(server, settings, auth="none", stateless=False)) as app, asgi_client(app) as http:
        assert (await http.get("/readyz")).status_code == 200  # nothing known yet
        async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client:
            assert (await client.call_tool("list_sessions", {**WINDOW, "limit": 2})).is_error
            down = await http.get("/readyz")
            assert (down.status_code, down.json()["status"]) == (503, "upstream unreachable")
            assert (await http.get("/healthz")).status_code == 200  # alive all the same
            outage.down = False
            assert not (await client.call_tool("list_sessions", {**WINDOW, "limit": 2})).is_error
        assert (await http.get("/readyz")).status_code == 200
