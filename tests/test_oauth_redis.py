"""`--auth oauth` with HARDAL_REDIS_URL: the authorization state lives in Redis (a real `redis-server`), so two
replicas honour each other's tokens and a revocation at one ends the token at both; every key it writes is
namespaced under `hardal:oauth:` and expires, and no Hardal key or token is stored in clear."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hardal_mcp.sandbox import DEMO_API_KEY

from .conftest import FakeClock
from .redis_server import RedisServer, running_redis
from .test_oauth import SECRET, browser, code_for, exchange, pkce, register, serve, tools_list


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def test_replicas_share_tokens_through_redis_namespaced_expiring_and_never_in_clear(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    clock = FakeClock(time.time())
    with (
        serve(tmp_path / "one", clock=clock, redis_url=redis_server.url) as one,
        serve(tmp_path / "two", clock=clock, redis_url=redis_server.url) as two,
    ):
        async with browser(one.url) as http:
            client_id = await register(http)
            verifier, challenge = pkce()
            code = await code_for(http, one.url, client_id, challenge)
            answer = await exchange(http, client_id, code, verifier)
            assert answer.status_code == 200, answer.text
            issued = answer.json()
        # Replica two serves the resource at another port, so it is another resource: it must refuse the token
        # (RFC 8707) though it finds it; replica one's own token works at one.
        assert (await tools_list(one.url, issued["access_token"])).status_code == 200
        assert (await tools_list(two.url, issued["access_token"])).status_code == 401
        # Replica two's token endpoint rotates the refresh token replica one issued: the state is shared.
        async with browser(two.url) as http:
            refreshed = await http.post(
                "/token",
                data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": issued["refresh_token"]},
            )
            assert refreshed.status_code == 200, refreshed.text
            reused = await http.post(
                "/token",
                data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": issued["refresh_token"]},
            )
            assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

        stored = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            keys = [k for k in stored.scan_iter("hardal:oauth:*")]
            assert keys
            assert all(stored.pttl(k) > 0 for k in keys)  # everything expires
            values = " ".join(str(stored.dump(k)) for k in keys) + " ".join(keys)
        finally:
            stored.close()
        assert not (tmp_path / "one" / "oauth.sqlite3").exists()  # Redis, not the file
        for secret in (DEMO_API_KEY, issued["access_token"], issued["refresh_token"], code, SECRET):
            assert secret not in values
