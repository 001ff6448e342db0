"""The authorization server's bookkeeping on its own clock: the number of clients is bounded, a client that
never completes a consent is forgotten, and the state file is refused unless it is ours."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from mcp.server.auth.provider import RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import SecretStr

from hardal_mcp.errors import ConfigError
from hardal_mcp.oauth.provider import CLIENT_TTL, NEW_CLIENT_TTL, HardalOAuthProvider
from hardal_mcp.oauth.sealing import Sealing
from hardal_mcp.oauth.sqlite_state import SqliteState

from .conftest import FakeClock

ISSUER = "http://127.0.0.1:8000"


def provider(path: Path, clock: FakeClock, **options: int) -> HardalOAuthProvider:
    state = SqliteState(path, clock=clock)
    sealing = Sealing(SecretStr("s" * 40))
    return HardalOAuthProvider(state, sealing, issuer=ISSUER, resource=f"{ISSUER}/mcp", clock=clock, **options)


def client(n: int, secret: str | None = None) -> OAuthClientInformationFull:
    return OAuthClientInformationFull(
        client_id=f"client-{n}",
        client_secret=secret,
        redirect_uris=["https://app.example/cb"],
        token_endpoint_auth_method="client_secret_post" if secret else "none",
    )


async def test_clients_are_bounded_and_unused_ones_are_forgotten(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    p = provider(tmp_path / "state" / "oauth.sqlite3", clock, max_clients=2)
    await p.register_client(client(1))
    await p.register_client(client(2, secret="client-secret-value-123"))
    with pytest.raises(RegistrationError) as refused:
        await p.register_client(client(3))
    assert refused.value.error == "invalid_client_metadata"
    stored = await p.get_client("client-2")
    assert stored is not None and stored.client_secret == "client-secret-value-123"  # sealed, and back
    raw = b"".join(f.read_bytes() for f in (tmp_path / "state").glob("oauth.sqlite3*"))
    assert b"client-secret-value-123" not in raw
    clock.now += NEW_CLIENT_TTL + 1  # neither ever completed a consent
    assert await p.get_client("client-1") is None
    await p.register_client(client(3))  # room again
    assert await p.get_client("client-3") is not None
    assert NEW_CLIENT_TTL < CLIENT_TTL


async def test_a_javascript_redirect_uri_is_refused_at_registration(tmp_path: Path) -> None:
    p = provider(tmp_path / "oauth.sqlite3", FakeClock(1_000_000.0))
    for uri in ("javascript://x/%0aalert(1)", "http://evil.example/cb", "data://x/y"):
        bad = OAuthClientInformationFull(client_id="c", redirect_uris=[uri], token_endpoint_auth_method="none")
        with pytest.raises(RegistrationError) as refused:
            await p.register_client(bad)
        assert refused.value.error == "invalid_redirect_uri"


def test_a_state_file_that_is_not_ours_is_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "oauth.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    before = other.read_bytes()
    with pytest.raises(ConfigError, match="another program"):
        SqliteState(other)
    assert other.read_bytes() == before
    target = tmp_path / "elsewhere"
    target.write_text("x")
    link = tmp_path / "linked" / "oauth.sqlite3"
    link.parent.mkdir(mode=0o700)
    os.symlink(target, link)
    with pytest.raises(ConfigError):
        SqliteState(link)
    assert target.read_text() == "x"
