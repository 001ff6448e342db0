"""The HTTP transport as an operator deploys it: bearer auth, hosted pass-through keys, stateless
replicas behind a balancer, the health route, and refusals to open an unsafe door. Real processes,
real loopback sockets, real MCP clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp, Message

from hardal_mcp.config import Settings
from hardal_mcp.sandbox import DEMO_API_KEY
from hardal_mcp.server import PASSTHROUGH_IDLE_TIMEOUT, AuthMode, build_server, http_app

from .conftest import ROOT, WINDOW, Served, free_port, make_settings, sandbox_transport, spawn, stop
from .test_server import TOOL_NAMES, text_of

TOKEN = "mcp-token-for-tests-0123456789"
DEMO = {"HARDAL_API_KEY": "demo-key", "HARDAL_WEBSITE_ID": "demo"}


@asynccontextmanager
async def served(args: list[str], env: dict[str, str]) -> AsyncIterator[Served]:
    port = free_port()
    server = spawn(["--transport", "http", "--port", str(port), *args], port, env=env)
    try:
        yield server
    finally:
        stop(server)


def bearer(token: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[ASGIApp]:
    """Run an ASGI app's lifespan (as uvicorn does, in a task of its own) around the block."""
    to_app, app_inbox = anyio.create_memory_object_stream[Message](4)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](4)
    async with anyio.create_task_group() as group:
        group.start_soon(
            app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, app_inbox.receive, app_outbox.send
        )
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        try:
            yield app
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


@asynccontextmanager
async def in_process(auth: AuthMode, settings: Settings | None = None, **options: object) -> AsyncIterator[ASGIApp]:
    """hardal-mcp's HTTP app in process (Hardal is the sandbox, in process too), lifespan running."""
    settings = settings or make_settings()
    server = build_server(settings, transport=sandbox_transport(), auth=auth)
    async with running(http_app(server, settings, auth=auth, stateless=False, **options)) as app:  # type: ignore[arg-type]
        yield app


def asgi_client(app: ASGIApp, token: str | None = None, host: str = "127.0.0.1:8000") -> httpx2.AsyncClient:
    headers = {"Host": host, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=f"http://{host}", headers=headers)


async def test_token_auth_rejects_missing_and_wrong_tokens_and_admits_the_right_one() -> None:
    async with served(["--demo"], {"HARDAL_MCP_TOKEN": TOKEN}) as server:
        url = f"{server.url}/mcp"
        async with httpx2.AsyncClient() as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            assert (await http.post(url, json=body)).status_code == 401
            wrong = await http.post(url, json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            health = await http.get(f"{server.url}/healthz")  # orchestrators probe without a token
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
        async with bearer(TOKEN) as http, Client(streamable_http_client(url, http_client=http)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOL_NAMES
            result = await client.call_tool("list_sessions", {"limit": 2})
            assert not result.is_error, text_of(result)


async def test_passthrough_uses_each_clients_key_and_never_shares_cached_answers(sandbox_server: Served) -> None:
    env = {"HARDAL_BASE_URL": sandbox_server.url, "HARDAL_WEBSITE_ID": "demo"}
    async with served(["--auth", "passthrough"], env) as server:
        url = f"{server.url}/mcp"
        async with httpx2.AsyncClient() as http:
            anonymous = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert anonymous.status_code == 401
        arguments = {**WINDOW, "limit": 3}
        async with bearer("demo-key") as http, Client(streamable_http_client(url, http_client=http)) as client:
            good = await client.call_tool("list_sessions", arguments)
            assert not good.is_error, text_of(good)
            assert good.structured_content["page"]["returned"] == 3
        # The same question with another key must reach Hardal again (and be refused), not the cache.
        async with bearer("someone-elses-key") as http, Client(streamable_http_client(url, http_client=http)) as client:
            other = await client.call_tool("list_sessions", arguments)
            assert other.is_error
            assert "401" in text_of(other)
            assert "someone-elses-key" not in text_of(other)


class Alternating(httpx2.AsyncBaseTransport):
    """A round-robin load balancer in a transport: each request goes to the next replica's port."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.turn = count()
        self.sent: list[int] = []
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[next(self.turn) % len(self.ports)]
        self.sent.append(port)
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stateless_replicas_serve_one_client_alternately(mode: str) -> None:
    async with served(["--demo", "--stateless"], {}) as first, served(["--demo", "--stateless"], {}) as second:
        ports = [int(first.url.rsplit(":", 1)[1]), int(second.url.rsplit(":", 1)[1])]
        balancer = Alternating(ports)
        async with (
            httpx2.AsyncClient(transport=balancer, timeout=30) as http,
            Client(streamable_http_client(f"{first.url}/mcp", http_client=http), mode=mode) as client,  # type: ignore[arg-type]
        ):
            for _ in range(3):
                assert {t.name for t in (await client.list_tools()).tools} == TOOL_NAMES
                result = await client.call_tool("list_sessions", {"limit": 1})
                assert not result.is_error, text_of(result)
        assert set(balancer.sent) == set(ports)  # both replicas answered


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--host", "0.0.0.0"], {}, "without authentication"),
        (["--host", "0.0.0.0", "--auth", "token"], {"HARDAL_MCP_TOKEN": TOKEN}, "HARDAL_MCP_ALLOWED_HOSTS"),
        (["--auth", "token"], {}, "HARDAL_MCP_TOKEN"),
    ],
)
def test_unsafe_http_setups_are_refused_at_startup(args: list[str], env: dict[str, str], expected: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hardal_mcp", "--transport", "http", "--demo", "--port", str(free_port()), *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert expected in done.stderr
    assert TOKEN not in done.stderr


# --- Passthrough speaks to remote clients; hosts match in any case ----------------------------------------


async def test_passthrough_tells_a_remote_client_to_present_its_key_not_to_set_a_variable() -> None:
    settings = make_settings(api_key=None)
    async with (
        in_process("passthrough", settings) as app,
        asgi_client(app, "junk-key-4711") as http,
        Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client,
    ):
        rejected = await client.call_tool("list_sessions", {"limit": 1})
    assert rejected.is_error
    assert text_of(rejected).startswith("Hardal rejected the API key (HTTP 401: Invalid API key): present your Hardal")
    assert "as the bearer token" in text_of(rejected)
    assert "HARDAL_API_KEY" not in text_of(rejected)
    assert "junk-key-4711" not in text_of(rejected)


async def test_passthrough_without_a_key_in_process_says_to_present_one() -> None:
    # The in-memory client carries no bearer token at all: the service has no key to use.
    server = build_server(make_settings(api_key=None), transport=sandbox_transport(), auth="passthrough")
    async with Client(server) as client:
        result = await client.call_tool("summarize_sessions", {})
    assert result.is_error
    assert text_of(result).startswith(
        "No Hardal API key came with the request: present your Hardal API key as the bearer token"
    )
    assert "HARDAL_API_KEY" not in text_of(result)


async def test_local_mode_still_names_the_variable() -> None:
    async with (
        in_process("none", make_settings(api_key="wrong-key-4711")) as app,
        asgi_client(app) as http,
        Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client,
    ):
        rejected = await client.call_tool("list_sessions", {"limit": 1})
    assert rejected.is_error
    assert "HARDAL_API_KEY" in text_of(rejected)
    assert "bearer token" not in text_of(rejected)


@pytest.mark.parametrize(
    ("host", "origin", "status"),
    [
        ("mcp.example.com", None, 200),
        ("MCP.Example.COM", None, 200),
        ("Mcp.Example.Com:8443", "HTTPS://MCP.EXAMPLE.COM", 200),
        ("LOCALHOST:8000", "http://LocalHost:8000", 200),
        ("evil.example", None, 421),
        ("mcp.example.com", "https://evil.example", 403),
    ],
)
async def test_allowed_hosts_and_origins_match_in_any_case(host: str, origin: str | None, status: int) -> None:
    settings = make_settings(
        mcp_allowed_hosts=["Mcp.Example.com", "mcp.example.com:*"], mcp_allowed_origins=["https://mcp.example.com"]
    )
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE}
    async with in_process("none", settings) as app, asgi_client(app, host=host) as http:
        headers = {"Accept": "application/json, text/event-stream", **({"Origin": origin} if origin else {})}
        response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == status, response.text


INITIALIZE = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}


# --- Passthrough: one key cannot take every session ----------------------------------------------------

LEGACY = {"Accept": "application/json, text/event-stream"}


async def open_session(http: httpx2.AsyncClient) -> httpx2.Response:
    """The 2025-era handshake's opening request: an initialize without a session id."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE}
    return await http.post("/mcp", json=body, headers=LEGACY)


async def tools_in(http: httpx2.AsyncClient, session_id: str) -> int:
    """Status of a tools/list in a session: 200 while it lives, 404 once it has ended."""
    headers = {**LEGACY, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": INITIALIZE["protocolVersion"]}
    response = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
    return response.status_code


@pytest.mark.parametrize(("per_key", "other_key"), [(3, 200), (None, 503)])  # None: the SDK alone (the control)
async def test_a_flood_from_one_key_cannot_lock_out_another(per_key: int | None, other_key: int) -> None:
    settings = make_settings(api_key=None)
    async with (
        in_process("passthrough", settings, max_sessions=12, sessions_per_key=per_key) as app,
        asgi_client(app, "junk-key") as flood,
        asgi_client(app, DEMO_API_KEY) as other,
    ):
        opened = []
        for _ in range(40):
            response = await open_session(flood)
            if response.status_code == 200:
                opened.append(response.headers["mcp-session-id"])
        answer = await open_session(other)
        assert answer.status_code == other_key, answer.text
        if per_key is None:
            assert len(opened) == 12  # the flood took every session there is
            return
        assert len(opened) == 40  # each opening ended the key's least recently used session
        assert [await tools_in(flood, sid) for sid in opened[-4:]] == [404, 200, 200, 200]
        assert await tools_in(flood, opened[0]) == 404
        assert await tools_in(other, answer.headers["mcp-session-id"]) == 200
        # A key's sessions are its own: another key cannot end or use them.
        assert await tools_in(other, opened[-1]) == 404
        assert await tools_in(flood, opened[-1]) == 200


async def test_concurrent_openings_of_one_key_are_bounded_too() -> None:
    async with (
        in_process("passthrough", make_settings(api_key=None), max_sessions=12, sessions_per_key=3) as app,
        asgi_client(app, "junk-key") as flood,
        asgi_client(app, DEMO_API_KEY) as other,
    ):
        answers: list[httpx2.Response] = []

        async def one() -> None:
            answers.append(await open_session(flood))

        async with anyio.create_task_group() as group:
            for _ in range(30):
                group.start_soon(one)
        statuses = {r.status_code for r in answers}
        assert statuses <= {200, 429}
        refused = [r for r in answers if r.status_code == 429]
        assert refused  # the openings did overlap
        assert all(r.headers["retry-after"] == "1" for r in refused)
        live = [r.headers["mcp-session-id"] for r in answers if r.status_code == 200]
        assert sum([await tools_in(flood, sid) == 200 for sid in live]) <= 3
        assert (await open_session(other)).status_code == 200


def test_passthrough_sessions_idle_out_sooner() -> None:
    for auth, idle in (("passthrough", PASSTHROUGH_IDLE_TIMEOUT), ("token", 1800)):
        settings = make_settings(api_key=None, mcp_token="t0ken")
        server = build_server(settings, transport=sandbox_transport(), auth=auth)  # type: ignore[arg-type]
        http_app(server, settings, auth=auth, stateless=False)  # type: ignore[arg-type]
        assert server.session_manager.session_idle_timeout == idle
    assert PASSTHROUGH_IDLE_TIMEOUT <= 300
