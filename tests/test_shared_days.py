"""Closed days shared by replicas through a real Redis (`store_redis.SharedDays`): read through into each
replica's own file, checked as the file's days are, kept apart by key, capped, expiring, claimed by one
replica at a time, and a Redis lost and back costs requests only. End to end, two servers on one Redis ask
about the same closed window at once: each day is fetched from Hardal once, and both answer alike."""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import httpx2
import orjson
import polars as pl
import pytest
import redis
from mcp.client import Client

from hardal_mcp.frames import decode, to_sessions
from hardal_mcp.frames import from_sessions as frame
from hardal_mcp.models import Session
from hardal_mcp.server import build_server
from hardal_mcp.store import DayKey, DayStore, seal
from hardal_mcp.store_redis import RETRY, SIZES, USED, SharedDays

from .conftest import make_settings
from .redis_server import PASSWORD, RedisServer, running_redis
from .test_store import DAY, Clock, assert_exact, key, sessions
from .test_store_privacy import API_KEY, SECRETS, WINDOW, hardal, spellings


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def replica(server: RedisServer, local: Path | None, **overrides: object) -> SharedDays:
    settings = make_settings(redis_url=server.url, **overrides)
    return SharedDays(settings, DayStore(local, clock=Clock()) if local else None, clock=Clock())


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD)


def test_a_day_one_replica_stored_is_served_to_another_and_kept_in_its_file(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    a, b = replica(redis_server, tmp_path / "a.sqlite3"), replica(redis_server, tmp_path / "b.sqlite3")
    want = sessions(60)
    assert a.put(key(), frame(want), 60)
    assert_exact(b.get(key()), want)
    assert b.local is not None
    assert_exact(b.local.get(key()), want)  # read through: b's own file has it now
    redis_server.kill()
    assert_exact(b.get(key()), want)  # ... so Redis is not needed for it again
    a.close()
    b.close()


def test_a_replica_without_a_file_of_its_own_reads_and_keeps_days_in_redis(redis_server: RedisServer) -> None:
    a, b = replica(redis_server, None), replica(redis_server, None)
    assert a.get(key()) is None
    assert a.put(key(), frame(sessions(5)), 5)
    assert_exact(b.get(key()), sessions(5))


def test_days_are_kept_apart_by_every_part_of_the_key(redis_server: RedisServer) -> None:
    a = replica(redis_server, None)
    assert a.put(key(), frame(sessions(5)), 5)
    for other in (
        key(fingerprint="f" * 12),  # another API key: another tenant
        key(website_id="other"),
        key(target_signal_id="sig"),
        key(is_hybrid=True),
        key(timezone="UTC"),
        key(day=DAY + timedelta(days=1)),
    ):
        assert a.get(other) is None


def test_only_whole_closed_days_are_shared(redis_server: RedisServer) -> None:
    a = replica(redis_server, None)
    assert not a.put(key(), frame(sessions(5)), 6)  # not the total Hardal reported
    assert not a.put(key(day=date(2026, 11, 19)), frame(sessions(5)), 5)  # younger than 48 h (Clock: 11-20)
    assert raw(redis_server).keys("hardal:day:*") == []


def test_a_damaged_shared_day_is_dropped_not_served(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = replica(redis_server, None)
    assert a.put(key(), frame(sessions(5)), 5)
    r = raw(redis_server)
    (name,) = r.keys("hardal:day:*")
    body = bytearray(r.hget(name, "body") or b"")
    body[len(body) // 2] ^= 0xFF
    r.hset(name, "body", bytes(body))
    with caplog.at_level(logging.WARNING):
        assert a.get(key()) is None
    assert "checksum" in caplog.text
    assert not r.exists(name)
    # A body copied under another key fails its checksum too: it is only ever served for its own key.
    assert a.put(key(), frame(sessions(5)), 5)
    r.copy(name, name.replace(b":day:", b":day:x"))
    other = seal(key(website_id="other"), frame(sessions(5)), 5)
    r.hset(name, "checksum", other.checksum)
    assert a.get(key()) is None


def test_every_shared_key_expires(redis_server: RedisServer) -> None:
    a = replica(redis_server, None, redis_days_ttl=3600.0)
    assert a.put(key(), frame(sessions(5)), 5)
    assert a.claim([key(day=DAY + timedelta(days=2))], 30.0)
    r = raw(redis_server)
    names = r.keys("hardal:day:*") + r.keys("hardal:claim:*") + [USED.encode(), SIZES.encode()]
    assert len(names) == 4
    for name in names:
        assert 0 < r.pttl(name) <= 3_600_000, name


def bulky(n: int, seed: int) -> pl.DataFrame:
    """A day of `n` sessions whose pages do not compress: about 45 bytes a session in a body."""
    rnd = random.Random(seed)
    start = datetime(2026, 10, 1, 12, tzinfo=UTC)
    return frame(
        [Session(id=f"b{seed}_{i}", started_at=start, pages=["/" + rnd.randbytes(40).hex()]) for i in range(n)]
    )


def test_the_least_recently_used_days_go_past_the_cap(redis_server: RedisServer) -> None:
    a = replica(redis_server, None, redis_days_mb=1)
    r = raw(redis_server)
    days = [DAY + timedelta(days=i) for i in range(12)]
    for i, day in enumerate(days):
        a._clock.now += 1  # type: ignore[attr-defined]  # later puts are more recent
        assert a.put(key(day=day), bulky(3000, seed=i), 3000)
        if i == 2:
            a._clock.now += 1  # type: ignore[attr-defined]
            assert a.get(key(day=days[0])) is not None  # used again: now the most recent of the three
    sizes = {k: int(v) for k, v in r.hgetall(SIZES).items()}
    assert 0 < sum(sizes.values()) <= 2**20
    kept = {d for d in days if a.get(key(day=d)) is not None}
    assert 3 <= len(kept) < len(days)
    assert days[-1] in kept and days[1] not in kept and days[2] not in kept  # the least recently used went first
    assert days[0] in kept or len(kept) <= len(days) - 3  # and the day used again outlived its neighbours
    assert len(r.keys("hardal:day:*")) == len(sizes) == len(kept)


def test_one_replica_at_a_time_holds_a_days_claim(redis_server: RedisServer) -> None:
    a, b = replica(redis_server, None), replica(redis_server, None)
    first, second, third = key(), key(day=DAY + timedelta(days=1)), key(day=DAY + timedelta(days=2))
    claim = a.claim([first, second], 30.0)
    assert claim
    assert b.claim([first], 30.0) is None
    assert a.claim([first], 30.0) is None  # not re-entrant: a second read of the same replica waits too
    # All or none: a window overlapping a held day takes none of its days, so no two reads each hold a day
    # the other waits for.
    assert b.claim([second, third], 30.0) is None
    assert b.claim([third], 30.0)
    b.release([first, second], "not-the-claim")  # only its holder lets a claim go
    assert b.claim([first], 30.0) is None
    a.release([first, second], claim)
    assert b.claim([first, second], 30.0)
    r = raw(redis_server)
    assert all(0 < r.pttl(name) <= 30_000 for name in r.keys("hardal:claim:*"))


def test_a_lost_redis_costs_requests_only_and_is_said_once(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monotonic = Monotonic()
    settings = make_settings(redis_url=redis_server.url)
    a = SharedDays(settings, DayStore(tmp_path / "a.sqlite3", clock=Clock()), clock=Clock(), monotonic=monotonic)
    assert a.put(key(), frame(sessions(5)), 5)
    redis_server.kill()
    with caplog.at_level(logging.WARNING):
        assert_exact(a.get(key()), sessions(5))  # from its file
        assert a.get(key(day=DAY + timedelta(days=1))) is None
        assert a.put(key(day=DAY + timedelta(days=2)), frame(sessions(4)), 4)  # kept locally
        assert a.claim([key(day=DAY + timedelta(days=3))], 30.0)  # alone, it fetches for itself
        assert a.claim([key(day=DAY + timedelta(days=3))], 30.0)
    assert caplog.text.count("does not answer") == 1
    redis_server.start()  # empty
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert a.claim([key(day=DAY + timedelta(days=3))], 30.0)  # not asked yet: within RETRY
        monotonic.now += RETRY
        assert a.put(key(day=DAY + timedelta(days=4)), frame(sessions(3)), 3)
        assert a.claim([key(day=DAY + timedelta(days=3))], 30.0)
        assert a.claim([key(day=DAY + timedelta(days=3))], 30.0) is None  # claims hold again
    assert "answers again" in caplog.text
    assert raw(redis_server).keys("hardal:day:*")  # shared again
    assert redis_server.url not in caplog.text and PASSWORD not in caplog.text


# ------------------------------------------------------------------------------------------- end to end


async def test_two_servers_on_one_redis_fetch_each_closed_day_once(tmp_path: Path) -> None:
    """Two replicas (own files, one Redis, one Hardal) asked about the same closed window at once, twice
    each: every day's sessions are fetched once in all, both answer alike, and Redis holds no planted
    personal data or secret in any spelling."""
    requests: list[httpx2.Request] = []

    def counted(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return hardal(request)

    with running_redis() as server:
        servers = [
            build_server(
                make_settings(api_key=API_KEY, store=str(tmp_path / name / "store.sqlite3"), redis_url=server.url),
                transport=httpx2.MockTransport(counted),
            )
            for name in ("a", "b")
        ]
        answers: list[str] = []
        async with Client(servers[0]) as one, Client(servers[1]) as two:

            async def ask(client: Client) -> None:
                result = await client.call_tool("summarize_sessions", WINDOW)
                assert not result.is_error, result.content
                answers.append(result.content[0].text)  # type: ignore[union-attr]

            async with anyio.create_task_group() as group:
                for client in (one, two, one, two):
                    group.start_soon(ask, client)
            again = len(requests)
            await ask(two)
            await ask(one)
            assert len(requests) == again  # stored and shared: no request at all
        session_reads = Counter(
            (r.url.params["startDate"], r.url.params["endDate"], r.url.params.get("offset", "0"))
            for r in requests
            if "startDate" in r.url.params
        )
        assert session_reads and max(session_reads.values()) == 1, session_reads
        assert len(set(answers)) == 1, answers
        # Bodies are compressed: they are decoded before they are searched, as the raw bytes could hide a leak.
        r = raw(server)
        bodies = [r.hget(name, "body") or b"" for name in r.keys("hardal:day:*")]
        assert len(bodies) == 3
        held = b"".join(orjson.dumps(to_sessions(decode(body)), default=str) for body in bodies)
        held += b"".join(r.get(name) or b"" for name in r.keys("*") if r.type(name) == b"string")
        assert b"/account?session_id=" in held  # what the masks keep is there
        assert [s for s in SECRETS if any(f in held for f in spellings(s))] == []


async def test_the_fill_leaves_a_day_another_replica_stored_while_it_took_the_claim() -> None:
    """The fill looks for a day, finds none, and claims it; another replica stored it and let go in between.
    Looked for again after the claim, the day is not fetched a second time."""
    from hardal_mcp.client import HardalClient
    from hardal_mcp.params import Window
    from hardal_mcp.planner import Allowance, Planner, Scope

    requests: list[httpx2.Request] = []

    def counted(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return hardal(request)

    with running_redis() as server:
        settings = make_settings(api_key=API_KEY, redis_url=server.url)
        other = SharedDays(settings, None)

        class Racing(SharedDays):
            def claim(self, keys: Sequence[DayKey], seconds: float) -> str | None:
                for k in keys:  # the other replica stores the day and lets its claim go, just before this one
                    assert other.put(k, frame(sessions(4)), 4)
                return super().claim(keys, seconds)

        day = date.fromisoformat(WINDOW["start_date"])
        client = HardalClient(settings, transport=httpx2.MockTransport(counted))
        planner = Planner(
            client,
            settings,
            settings.api_key,  # type: ignore[arg-type]
            Scope("site", Window("custom", day, day, "UTC")),
            store=Racing(settings, None),
            deadline=math.inf,
            allowance=Allowance(100),
        )
        try:
            assert await planner.fill() == 0
        finally:
            await client.aclose()
        assert [r for r in requests if "startDate" in r.url.params] == []
