"""`--auth oauth` end to end: hardal-mcp served by uvicorn on a real loopback port, the SDK's own OAuth client
(`mcp.client.auth.OAuthClientProvider`) discovering, registering and exchanging its code, the consent page
filled in by posting its form as a browser does, a tool call against the sandbox, refresh and revocation; then
every way in that must fail, each with the right OAuth error and nothing issued, and the state file's bytes.

Hardal is the sandbox in process, behind a gate that can make it refuse a key (401) mid-test. Expiry is judged
by a clock the tests move: nothing sleeps."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
import uvicorn
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from starlette.types import ASGIApp, Receive, Scope, Send

from hardal_mcp.config import Settings
from hardal_mcp.oauth.provider import ACCESS_TTL
from hardal_mcp.sandbox import DEMO_API_KEY, SandboxConfig, create_app
from hardal_mcp.server import build_server, http_app

from .conftest import WINDOW, FakeClock, free_port

SECRET = "oauth-server-secret-for-tests-0123456789"
OTHER_KEY = "another-valid-hardal-key-77"
REDIRECT = "http://127.0.0.1:49999/callback"  # never contacted: the test reads the Location header


class Gate:
    """Hardal (the sandbox), made to answer 401 to the keys in `refused`, as Hardal does to a revoked key."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.refused: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            if auth.removeprefix("Bearer ").strip() in self.refused:
                body = b'{"success":false,"error":"Invalid API key"}'
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@dataclass
class Served:
    url: str
    clock: FakeClock
    gate: Gate
    state_dir: Path
    requests: list[str] = field(default_factory=list)  # Hardal requests seen (paths)


@contextmanager
def serve(
    state_dir: Path, *, public_host: str = "127.0.0.1", clock: FakeClock | None = None, redis_url: str | None = None
) -> Iterator[Served]:
    """hardal-mcp --auth oauth in a thread (uvicorn), its state in `state_dir` (or in Redis at `redis_url`)."""
    port = free_port()
    clock = clock or FakeClock(time.time())
    gate = Gate(create_app(SandboxConfig(sessions_per_day=120, more_keys=(OTHER_KEY,))))
    served = Served(f"http://{public_host}:{port}", clock, gate, state_dir)

    async def record(request: httpx2.Request) -> None:
        served.requests.append(request.url.path)

    settings = Settings.model_validate(
        {
            "base_url": "http://sandbox.test",
            "store": f"{state_dir}/",
            "oauth_secret": SECRET,
            "public_url": served.url,
            "redis_url": redis_url,
        }
    )
    transport = httpx2.ASGITransport(app=gate)
    server = build_server(settings, transport=_Recording(transport, record), auth="oauth", clock=clock)
    app = http_app(server, settings, auth="oauth", stateless=False, clock=clock)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None, access_log=False)
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not runner.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)  # waiting for a real server to listen, not timing anything
    try:
        yield served
    finally:
        runner.should_exit = True
        thread.join(10)


class _Recording(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, hook: object) -> None:
        self.inner = inner
        self.hook = hook

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await self.hook(request)  # type: ignore[operator]
        return await self.inner.handle_async_request(request)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path / "state") as served:
        yield served


# -- a browser, and a hand-driven OAuth client ----------------------------------------------------------------


async def fill_consent(
    http: httpx2.AsyncClient, authorize_url: str, *, key: str, website: str = "demo", action: str = "allow"
) -> httpx2.Response:
    """What a person's browser does: follow /authorize to the consent page, then post its form."""
    first = await http.get(authorize_url)
    assert first.status_code == 302, first.text
    page = await http.get(first.headers["location"])
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorize_url))
    form = {**fields, "api_key": key, "website_id": website, "action": action}
    return await http.post("/consent", data=form, headers={"Origin": origin})


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def register(http: httpx2.AsyncClient, redirect: str = REDIRECT) -> str:
    answer = await http.post(
        "/register",
        json={
            "redirect_uris": [redirect],
            "client_name": "Hand-driven <b>client</b>",
            "token_endpoint_auth_method": "none",
        },
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


def authorize_url(base: str, client_id: str, challenge: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-1",
        "resource": f"{base}/mcp",
        **extra,
    }
    return str(httpx2.URL(f"{base}/authorize", params=params))


async def code_for(http: httpx2.AsyncClient, base: str, client_id: str, challenge: str, key: str = DEMO_API_KEY) -> str:
    answer = await fill_consent(http, authorize_url(base, client_id, challenge), key=key)
    assert answer.status_code == 303, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["st-1"] and query["iss"] == [base]
    return query["code"][0]


async def exchange(
    http: httpx2.AsyncClient, client_id: str, code: str, verifier: str, redirect: str = REDIRECT
) -> httpx2.Response:
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": redirect,
    }
    return await http.post("/token", data=form)


async def tokens(http: httpx2.AsyncClient, base: str, key: str = DEMO_API_KEY) -> tuple[str, dict[str, str]]:
    client_id = await register(http)
    verifier, challenge = pkce()
    answer = await exchange(http, client_id, await code_for(http, base, client_id, challenge, key), verifier)
    assert answer.status_code == 200, answer.text
    return client_id, answer.json()


async def tools_list(base: str, token: str) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(f"{base}/mcp", json=body, headers=headers)


@asynccontextmanager
async def browser(base: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=base, timeout=30, follow_redirects=False) as http:
        yield http


# -- the SDK's own client, end to end -------------------------------------------------------------------------


class Memory:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_the_sdk_client_discovers_registers_consents_calls_refreshes_and_revokes(server: Served) -> None:
    storage = Memory()
    landed: list[str] = []
    pages: list[str] = []

    async def redirect_handler(url: str) -> None:
        async with browser(server.url) as http:
            first = await http.get(url)
            page = await http.get(first.headers["location"])
            pages.append(page.text)
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            answer = await fill_consent(http, url, key=DEMO_API_KEY)
            assert answer.status_code == 303
            landed.append(answer.headers["location"])

    async def callback_handler() -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(landed[-1]).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query["iss"][0])

    metadata = OAuthClientMetadata(
        redirect_uris=[REDIRECT], client_name="Test Connector", token_endpoint_auth_method="none"
    )
    auth = OAuthClientProvider(f"{server.url}/mcp", metadata, storage, redirect_handler, callback_handler)
    async with httpx2.AsyncClient(auth=auth, timeout=60) as http:
        async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client:
            result = await client.call_tool("list_sessions", {**WINDOW, "limit": 2})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            assert result.structured_content["page"]["returned"] == 2
        assert "Test Connector" in pages[0]  # the page names the client that asks
        assert storage.tokens is not None and storage.tokens.refresh_token is not None
        first = storage.tokens

        # An hour later the access token is dead; the SDK client refreshes (rotating the refresh token).
        server.clock.now += ACCESS_TTL + 1
        assert (await tools_list(server.url, first.access_token)).status_code == 401
        auth.context.token_expiry_time = time.time() - 1  # the client's own clock: tell it the hour has passed
        async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client:
            again = await client.call_tool("list_sessions", {**WINDOW, "limit": 1})
            assert not again.is_error, again.content
        assert len(landed) == 1  # refreshed, not authorized again
        second = storage.tokens
        assert second.access_token != first.access_token and second.refresh_token != first.refresh_token

    async with browser(server.url) as raw:
        assert storage.client is not None
        client_id = storage.client.client_id
        assert client_id is not None
        assert (await tools_list(server.url, second.access_token)).status_code == 200
        # The SDK's RevocationRequest requires the client_secret field, empty for a public client.
        form = {"token": second.access_token, "client_id": client_id, "client_secret": ""}
        revoked = await raw.post("/revoke", data=form)
        assert revoked.status_code == 200
        assert (await tools_list(server.url, second.access_token)).status_code == 401
        after = await raw.post(
            "/token",
            data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": second.refresh_token},
        )
        assert after.status_code == 400 and after.json()["error"] == "invalid_grant"  # revoked with its grant
        old = await raw.post(
            "/token", data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": first.refresh_token}
        )
        assert old.status_code == 400 and old.json()["error"] == "invalid_grant"


# -- what must fail ------------------------------------------------------------------------------------------


async def test_a_wrong_pkce_verifier_gets_invalid_grant_and_no_token(server: Served) -> None:
    async with browser(server.url) as http:
        client_id = await register(http)
        _, challenge = pkce()
        code = await code_for(http, server.url, client_id, challenge)
        wrong = await exchange(http, client_id, code, pkce()[0])
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        assert "access_token" not in wrong.json()


async def test_a_code_is_exchanged_once(server: Served) -> None:
    async with browser(server.url) as http:
        client_id = await register(http)
        verifier, challenge = pkce()
        code = await code_for(http, server.url, client_id, challenge)
        first = await exchange(http, client_id, code, verifier)
        assert first.status_code == 200
        again = await exchange(http, client_id, code, verifier)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        assert "access_token" not in again.json()
    # A code replayed was stolen (or its first use was): what it gave is revoked too.
    assert (await tools_list(server.url, first.json()["access_token"])).status_code == 401


async def test_a_refresh_token_replayed_after_rotation_ends_the_authorization(server: Served) -> None:
    async with browser(server.url) as http:
        client_id, issued = await tokens(http, server.url)
        form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": issued["refresh_token"]}
        rotated = await http.post("/token", data=form)
        assert rotated.status_code == 200
        assert (await tools_list(server.url, rotated.json()["access_token"])).status_code == 200
        replayed = await http.post("/token", data=form)
        assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
        assert "access_token" not in replayed.json()
        assert (await tools_list(server.url, rotated.json()["access_token"])).status_code == 401
        newer = {**form, "refresh_token": rotated.json()["refresh_token"]}
        assert (await http.post("/token", data=newer)).json()["error"] == "invalid_grant"


async def test_deny_sends_access_denied_back_and_issues_nothing(server: Served) -> None:
    async with browser(server.url) as http:
        client_id = await register(http)
        _, challenge = pkce()
        answer = await fill_consent(http, authorize_url(server.url, client_id, challenge), key="", action="deny")
        assert answer.status_code == 303
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["error"] == ["access_denied"] and query["state"] == ["st-1"] and "code" not in query


async def test_a_foreign_redirect_uri_is_refused_at_authorize_and_at_token(server: Served) -> None:
    async with browser(server.url) as http:
        client_id = await register(http)
        verifier, challenge = pkce()
        foreign = authorize_url(server.url, client_id, challenge, redirect_uri="https://evil.example/cb")
        refused = await http.get(foreign)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"  # never redirected
        assert "location" not in refused.headers
        code = await code_for(http, server.url, client_id, challenge)
        other = await exchange(http, client_id, code, verifier, redirect="http://127.0.0.1:9/other")
        assert other.status_code == 400 and other.json()["error"] == "invalid_request"
        assert "access_token" not in other.json()


async def test_an_expired_access_token_is_refused(server: Served) -> None:
    async with browser(server.url) as http:
        _, issued = await tokens(http, server.url)
    assert (await tools_list(server.url, issued["access_token"])).status_code == 200
    server.clock.now += ACCESS_TTL + 1
    expired = await tools_list(server.url, issued["access_token"])
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]


async def test_a_token_is_refused_by_another_resource_and_another_resource_is_not_granted(tmp_path: Path) -> None:
    state = tmp_path / "shared-state"
    clock = FakeClock(time.time())
    with serve(state, clock=clock) as one, serve(state, public_host="localhost", clock=clock) as two:
        async with browser(one.url) as http:
            _, issued = await tokens(http, one.url)
            assert (await tools_list(one.url, issued["access_token"])).status_code == 200
            # The same state (the same token record) behind another resource URL: not for it.
            assert (await tools_list(two.url, issued["access_token"])).status_code == 401
            client_id = await register(http)
            _, challenge = pkce()
            elsewhere = authorize_url(one.url, client_id, challenge, resource=f"{two.url}/mcp")
            refused = await http.get(elsewhere)
            assert refused.status_code == 302
            query = parse_qs(urlsplit(refused.headers["location"]).query)
            assert query["error"] == ["invalid_target"] and "code" not in query


async def test_a_key_hardal_later_refuses_revokes_its_tokens(server: Served) -> None:
    async with browser(server.url) as http:
        client_id, issued = await tokens(http, server.url)
        _, others = await tokens(http, server.url, key=OTHER_KEY)
    server.gate.refused.add(DEMO_API_KEY)
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client,
    ):
        result = await client.call_tool("list_sessions", {**WINDOW, "limit": 1})
        assert result.is_error
        text = " ".join(block.text for block in result.content if block.type == "text")
        assert "reconnect" in text and DEMO_API_KEY not in text
    assert (await tools_list(server.url, issued["access_token"])).status_code == 401
    async with browser(server.url) as raw:
        refresh = await raw.post(
            "/token",
            data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": issued["refresh_token"]},
        )
        assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    assert (await tools_list(server.url, others["access_token"])).status_code == 200  # another key: untouched


async def test_a_bad_key_typed_on_the_page_is_said_there_and_nothing_is_issued(server: Served) -> None:
    async with browser(server.url) as http:
        client_id = await register(http)
        _, challenge = pkce()
        before = len(server.requests)
        answer = await fill_consent(http, authorize_url(server.url, client_id, challenge), key="not-a-hardal-key")
        assert answer.status_code == 400
        assert "location" not in answer.headers
        assert "Hardal rejected this API key" in answer.text
        assert "not-a-hardal-key" not in answer.text  # the typed key is not echoed back
        assert len(server.requests) - before == 1  # checked with one request to Hardal
        # The person can fix it on the same page: the request is still open.
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', answer.text))
        assert fields["request"]


async def test_the_consent_form_needs_its_csrf_token_and_escapes_the_client_name(server: Served) -> None:
    async with browser(server.url) as http:
        client_id = await register(http)
        _, challenge = pkce()
        first = await http.get(authorize_url(server.url, client_id, challenge))
        page = await http.get(first.headers["location"])
        assert "Hand-driven &lt;b&gt;client&lt;/b&gt;" in page.text and "<b>client" not in page.text
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
        forged = {**fields, "csrf": "guessed", "api_key": DEMO_API_KEY, "action": "allow"}
        assert (await http.post("/consent", data=forged)).status_code == 403
        cross = {**fields, "api_key": DEMO_API_KEY, "action": "allow"}
        assert (await http.post("/consent", data=cross, headers={"Origin": "https://evil.example"})).status_code == 403


async def test_a_registration_flood_is_refused_per_address(server: Served) -> None:
    async with browser(server.url) as http:
        answers = [
            await http.post("/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
            for _ in range(12)
        ]
    assert [a.status_code for a in answers] == [201] * 10 + [429] * 2
    assert answers[-1].json()["error"] == "temporarily_unavailable"
    assert "client_id" not in answers[-1].json()


async def test_the_state_file_holds_no_key_and_no_token_in_clear(server: Served) -> None:
    async with browser(server.url) as http:
        client_id = await register(http)
        verifier, challenge = pkce()
        code = await code_for(http, server.url, client_id, challenge)
        issued = (await exchange(http, client_id, code, verifier)).json()
    state = server.state_dir / "oauth.sqlite3"
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    assert oct(state.parent.stat().st_mode & 0o777) == "0o700"
    raw = b"".join(p.read_bytes() for p in server.state_dir.glob("oauth.sqlite3*"))
    assert raw  # something was written
    for secret in (DEMO_API_KEY, issued["access_token"], issued["refresh_token"], code, SECRET):
        assert secret.encode() not in raw
