"""No key reads another key's data: not through the day store, the response cache or an MCP session, not
when two keys would share a short fingerprint, not after Hardal revoked the key, not by padding the key with
whitespace (issue 13)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr
from starlette.types import ASGIApp

from hardal_mcp.client import VERIFY_TTL, Acceptance, HardalClient
from hardal_mcp.config import Settings
from hardal_mcp.errors import AuthError
from hardal_mcp.keys import SECRET_FILENAME, Fingerprints, load_secret
from hardal_mcp.params import resolve_window
from hardal_mcp.planner import Scope
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig, create_app
from hardal_mcp.server import build_server, http_app
from hardal_mcp.service import Hardal
from hardal_mcp.store import DayStore

from .conftest import ROOT, WINDOW, make_settings
from .test_http import LEGACY, asgi_client, open_session, running, tools_in
from .test_server import text_of

# Two keys whose old fingerprints (sha256, first 12 hex digits) were the same: 48659afbccc8.
TENANT_A = "tenant-5402795"
TENANT_B = "tenant-26342070"


@dataclass
class Revocable(httpx2.AsyncBaseTransport):
    """The sandbox in process, behind a switch that revokes keys, recording the keys that reach it."""

    config: SandboxConfig
    revoked: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)  # Authorization headers, in order

    def __post_init__(self) -> None:
        self._sandboxes: dict[frozenset[str], httpx2.ASGITransport] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append(request.headers["authorization"])
        return await self._sandbox().handle_async_request(request)

    def _sandbox(self) -> httpx2.ASGITransport:
        """The sandbox as it is now: one that accepts only the keys not yet revoked."""
        kept = [k for k in self.config.keys if k not in self.revoked] or ["a-key-nobody-holds"]
        sandbox = self._sandboxes.get(frozenset(kept))
        if sandbox is None:
            config = replace(self.config, api_key=kept[0], more_keys=tuple(kept[1:]))
            sandbox = self._sandboxes[frozenset(kept)] = httpx2.ASGITransport(app=create_app(config))
        return sandbox

    def count(self, key: str) -> int:
        return sum(header == f"Bearer {key}" for header in self.seen)


@asynccontextmanager
async def passthrough(settings: Settings, hardal: httpx2.AsyncBaseTransport) -> AsyncIterator[ASGIApp]:
    server = build_server(settings, transport=hardal, auth="passthrough")
    async with running(http_app(server, settings, auth="passthrough", stateless=False)) as app:
        yield app


@asynccontextmanager
async def mcp_as(app: ASGIApp, key: str) -> AsyncIterator[Client]:
    async with (
        asgi_client(app, key) as http,
        Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http)) as client,
    ):
        yield client


# --- two keys that once shared a fingerprint ----------------------------------------------------------


async def test_keys_with_one_short_fingerprint_stay_apart_in_store_cache_and_sessions(tmp_path: Path) -> None:
    settings = make_settings(api_key=None, store=str(tmp_path))
    hardal = Revocable(SandboxConfig(sessions_per_day=40, api_key=TENANT_A))
    async with passthrough(settings, hardal) as app:
        async with mcp_as(app, TENANT_A) as a:
            summary = await a.call_tool("summarize_sessions", WINDOW)  # read whole, so its days are stored
            page = await a.call_tool("list_sessions", {**WINDOW, "limit": 3})  # kept in the response cache
        assert not summary.is_error and not page.is_error, text_of(summary) + text_of(page)
        assert summary.structured_content["totals"]["sessions"] > 0
        async with mcp_as(app, TENANT_B) as b:
            stolen_days = await b.call_tool("summarize_sessions", WINDOW)
            stolen_page = await b.call_tool("list_sessions", {**WINDOW, "limit": 3})
        for answer in (stolen_days, stolen_page):
            assert answer.is_error
            assert text_of(answer).startswith("Hardal rejected the API key (HTTP 401"), text_of(answer)
            assert TENANT_B not in text_of(answer)
        assert hardal.count(TENANT_B) >= 2  # Hardal judged B each time; nothing kept for A answered it

        # A's MCP session is A's alone: B can neither use nor end it.
        async with asgi_client(app, TENANT_A) as a_http, asgi_client(app, TENANT_B) as b_http:
            opened = await open_session(a_http)
            session_id = opened.headers["mcp-session-id"]
            assert await tools_in(b_http, session_id) == 404
            ended = await b_http.delete("/mcp", headers={**LEGACY, "Mcp-Session-Id": session_id})
            assert ended.status_code == 404
            assert await tools_in(a_http, session_id) == 200


# --- a key Hardal stops accepting ---------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_revoked_key_gets_hardals_refusal_not_stored_days_once_its_vouch_expires(tmp_path: Path) -> None:
    settings = make_settings(store=str(tmp_path))
    hardal = Revocable(SandboxConfig(sessions_per_day=40, more_keys=("other-key",)))
    clock = Clock()
    client = HardalClient(settings, transport=hardal, acceptance=Acceptance(clock=clock))
    store = DayStore.open(settings)
    assert store is not None
    window = resolve_window(None, WINDOW["start_date"], WINDOW["end_date"], settings.timezone)
    scope = Scope(DEMO_WEBSITE_ID, window)

    async def summarize(key: str) -> int:
        result, _ = await Hardal(settings, client, SecretStr(key), store=store).summarize(
            scope, max_sessions=10_000, top=5
        )
        return result.totals.sessions

    try:
        whole = await summarize(DEMO_API_KEY)  # read whole: the days are stored
        assert await summarize("other-key") == whole  # from the store, once Hardal vouched for the key
        hardal.revoked.add(DEMO_API_KEY)
        before = len(hardal.seen)
        assert await summarize(DEMO_API_KEY) == whole  # within VERIFY_TTL of Hardal's last yes: no request
        assert len(hardal.seen) == before
        clock.now += VERIFY_TTL
        with pytest.raises(AuthError) as refused:
            await summarize(DEMO_API_KEY)
        assert refused.value.status == 401
        assert hardal.seen[before:] == [f"Bearer {DEMO_API_KEY}"]  # one cheap check, refused
        assert await summarize("other-key") == whole  # another key is not hurt by the revocation
    finally:
        store.close()
        await client.aclose()


async def test_a_new_process_serves_stored_days_only_once_hardal_accepts_the_key(tmp_path: Path) -> None:
    settings = make_settings(store=str(tmp_path))
    hardal = Revocable(SandboxConfig(sessions_per_day=40))
    window = resolve_window(None, WINDOW["start_date"], WINDOW["end_date"], settings.timezone)
    store = DayStore.open(settings)
    assert store is not None
    try:
        for revoked in (False, True):  # a run that stores the days, then one started after the revocation
            if revoked:
                hardal.revoked.add(DEMO_API_KEY)
            client = HardalClient(settings, transport=hardal)
            service = Hardal(settings, client, store=store)
            try:
                with pytest.raises(AuthError) if revoked else nullcontext():
                    await service.summarize(Scope(DEMO_WEBSITE_ID, window), max_sessions=10_000, top=5)
            finally:
                await client.aclose()
    finally:
        store.close()


async def test_a_401_forgets_the_key_for_every_website_a_403_for_one() -> None:
    clock = Clock()
    acceptance = Acceptance(clock=clock)
    for site in ("a", "b"):
        acceptance.accepted("fp", site)
    acceptance.accepted("other", "a")
    acceptance.refused("fp", "a", 403)
    assert not acceptance.fresh("fp", "a") and acceptance.fresh("fp", "b")
    acceptance.refused("fp", "b", 500)  # Hardal failing says nothing about the key
    assert acceptance.fresh("fp", "b")
    acceptance.refused("fp", "a", 401)
    assert not acceptance.fresh("fp", "b")
    assert acceptance.fresh("other", "a")
    clock.now += VERIFY_TTL
    assert not acceptance.fresh("other", "a")


async def test_a_cached_body_is_served_only_to_a_key_hardal_still_accepts() -> None:
    hardal = Revocable(SandboxConfig(sessions_per_day=40))
    clock = Clock()
    client = HardalClient(make_settings(), transport=hardal, acceptance=Acceptance(clock=clock))
    window = resolve_window(None, WINDOW["start_date"], WINDOW["end_date"], "UTC")
    key = SecretStr(DEMO_API_KEY)
    try:
        first = await client.sessions(key, DEMO_WEBSITE_ID, window, limit=5)
        assert (await client.sessions(key, DEMO_WEBSITE_ID, window, limit=5)).sessions == first.sessions
        assert len(hardal.seen) == 1  # the second came from the cache
        hardal.revoked.add(DEMO_API_KEY)
        clock.now += VERIFY_TTL
        with pytest.raises(AuthError):
            await client.sessions(key, DEMO_WEBSITE_ID, window, limit=5)
        assert len(hardal.seen) == 2
    finally:
        await client.aclose()


async def test_concurrent_reads_of_kept_data_ask_hardal_once() -> None:
    hardal = Revocable(SandboxConfig(sessions_per_day=40))
    client = HardalClient(make_settings(), transport=hardal)
    try:
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(client.vouch, SecretStr(DEMO_API_KEY), DEMO_WEBSITE_ID)
        assert hardal.seen == [f"Bearer {DEMO_API_KEY}"]
        await client.vouch(SecretStr(DEMO_API_KEY), DEMO_WEBSITE_ID)  # vouched for: no request
        assert len(hardal.seen) == 1
    finally:
        await client.aclose()


# --- whitespace around a presented key ----------------------------------------------------------------


async def test_a_key_padded_with_whitespace_is_the_same_key() -> None:
    settings = make_settings(api_key=None)
    hardal = Revocable(SandboxConfig(sessions_per_day=40))
    async with passthrough(settings, hardal) as app:
        for token in (DEMO_API_KEY, f" {DEMO_API_KEY}"):  # the second sends `Bearer  demo-key`
            async with mcp_as(app, token) as client:
                page = await client.call_tool("list_sessions", {**WINDOW, "limit": 3})
            assert not page.is_error, text_of(page)
        assert hardal.seen == [f"Bearer {DEMO_API_KEY}"]  # one fingerprint: the cache answered the second
        async with asgi_client(app, DEMO_API_KEY) as plain, asgi_client(app, f"  {DEMO_API_KEY} ") as padded:
            session_id = (await open_session(plain)).headers["mcp-session-id"]
            assert await tools_in(padded, session_id) == 200  # and the same MCP client

    client = HardalClient(make_settings())
    assert client.fingerprints.of(SecretStr(f"  {DEMO_API_KEY}\t")) == client.fingerprints.of(SecretStr(DEMO_API_KEY))
    assert client.budget(SecretStr(f" {DEMO_API_KEY}")) is client.budget(SecretStr(DEMO_API_KEY))


# --- the fingerprint and its secret -------------------------------------------------------------------


def test_a_fingerprint_is_a_full_length_keyed_hash_that_shows_nothing_of_the_key() -> None:
    fingerprints = Fingerprints(b"s" * 32)
    first = fingerprints.of(SecretStr(TENANT_A))
    assert first == fingerprints.of(SecretStr(TENANT_A))
    assert first != fingerprints.of(SecretStr(TENANT_B))
    assert len(first) == 64 and all(c in "0123456789abcdef" for c in first)
    assert first != Fingerprints(b"t" * 32).of(SecretStr(TENANT_A))  # without the secret, no way to compute it
    assert fingerprints.display(first) == first[:12]
    key = "hk_test_Zq8vN3kLp2Rt7Wm4Xy6Bc1Df"
    assert all(key[i : i + 6] not in fingerprints.of(SecretStr(key)) for i in range(len(key) - 5))


def test_the_secret_is_private_made_once_and_shared_by_every_process_on_the_store(tmp_path: Path) -> None:
    settings = make_settings(store=str(tmp_path / "cache" / "store.sqlite3"))
    mine = Fingerprints.for_settings(settings).of(SecretStr(TENANT_A))
    path = tmp_path / "cache" / SECRET_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    made = path.stat()
    script = (
        "import sys; from pydantic import SecretStr; from hardal_mcp.config import Settings;"
        "from hardal_mcp.keys import Fingerprints;"
        "print(Fingerprints.for_settings(Settings(store=sys.argv[1])).of(SecretStr(sys.argv[2])))"
    )
    theirs = subprocess.run(
        [sys.executable, "-c", script, settings.store, TENANT_A], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert theirs == mine
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)  # not made again
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no staging file left


def test_processes_racing_to_make_the_secret_end_up_with_one(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / SECRET_FILENAME
    got: list[bytes] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        got.append(load_secret(path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8 and len(set(got)) == 1
    assert path.read_bytes() == got[0]


@pytest.mark.parametrize("spoil", ["readable", "symlink", "short"])
def test_an_unsafe_secret_file_is_refused_and_nothing_is_shared(
    tmp_path: Path, spoil: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / SECRET_FILENAME
    if spoil == "symlink":
        (tmp_path / "elsewhere").write_bytes(b"x" * 32)
        os.chmod(tmp_path / "elsewhere", 0o600)
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.write_bytes(b"x" * (32 if spoil == "readable" else 5))
        os.chmod(path, 0o644 if spoil == "readable" else 0o600)
    settings = make_settings(store=str(tmp_path) + "/")
    first, second = (Fingerprints.for_settings(settings).of(SecretStr(TENANT_A)) for _ in range(2))
    assert first != second  # each a process's own secret: known to nobody else
    assert first != Fingerprints(b"x" * 32).of(SecretStr(TENANT_A))
    assert any("unusable" in r.getMessage() for r in caplog.records)


def test_without_a_store_each_process_has_a_secret_of_its_own() -> None:
    settings = make_settings(store="off")
    assert Fingerprints.for_settings(settings).of(SecretStr(TENANT_A)) != Fingerprints.for_settings(settings).of(
        SecretStr(TENANT_A)
    )
