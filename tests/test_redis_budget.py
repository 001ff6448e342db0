"""The rate budget replicas share through Redis, against a real `redis-server` (tests/redis_server.py): slots
counted across replicas, holds reaching every replica, keys of one fingerprint never touching another's and
every key expiring, several processes never exceeding the limit in any window, Redis killed mid-run and
started again (each replica goes on alone at its share, then writes back what it spent, the limit held
throughout), the start refused without Redis, and the URL's password never in a log or message. Clocks are
the tests' own (FakeClock) except where separate processes must share a window."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from pydantic import SecretStr

from hardal_mcp.budget_redis import EPOCH, REPLICAS, SECRET, RedisBudgets, RedisRateLimiter
from hardal_mcp.cli import main
from hardal_mcp.client import HardalClient, RetryPolicy
from hardal_mcp.errors import RateLimitError
from hardal_mcp.params import resolve_window
from hardal_mcp.ratelimit import START_BY, WINDOW
from hardal_mcp.sandbox import DEMO_API_KEY, SandboxConfig, serve_in_thread

from .conftest import ROOT, FakeClock, free_port, make_settings
from .redis_server import PASSWORD, RedisServer, redis_binary, running_redis

FP = "a" * 64
OTHER = "b" * 64


def backend(server: RedisServer, clock: FakeClock, rate_limit: int = 5) -> RedisBudgets:
    settings = make_settings(redis_url=server.url, rate_limit=rate_limit)
    return RedisBudgets(settings, clock=clock, sleep=clock.sleep)


async def enter_and_leave(limiter: RedisRateLimiter) -> None:
    async with limiter.slot():
        pass


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[FakeClock, RedisBudgets, RedisBudgets]]:
    """Two replicas' backends on one Redis and one clock (wall-clock based: holds are Unix times)."""
    clock = FakeClock(time.time())
    one, two = backend(redis_server, clock), backend(redis_server, clock)
    yield clock, one, two
    await one.aclose()
    await two.aclose()


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


# ------------------------------------------------------------------------------------------ one window


async def test_replicas_count_their_slots_in_one_window(replicas: tuple[FakeClock, RedisBudgets, RedisBudgets]) -> None:
    clock, one, two = replicas
    a, b = one(FP), two(FP)
    for _ in range(3):
        await enter_and_leave(a)
    clock.now += 10
    for _ in range(2):
        await enter_and_leave(b)
    assert a.available(0) == 0 and b.available(0) == 0
    assert a.available(50) == 3  # the first three leave the window 60 s after their answers
    assert b.available(60) == 5
    await enter_and_leave(b)  # a sixth waits for the oldest answer to leave
    assert clock.waits == [pytest.approx(50.0)]


async def test_a_slot_is_held_in_flight_and_dated_by_its_answer(
    replicas: tuple[FakeClock, RedisBudgets, RedisBudgets],
) -> None:
    clock, one, two = replicas
    a, b = one(FP), two(FP)
    async with a.slot():
        assert b.available(0) == 4  # in flight elsewhere: it counts
        clock.now += 30  # a slow answer
    assert b.available(59) == 4  # dated by its answer, not its start
    assert b.available(60) == 5


async def test_a_replica_that_died_mid_request_frees_its_slot_once_silent(
    replicas: tuple[FakeClock, RedisBudgets, RedisBudgets],
) -> None:
    clock, one, two = replicas
    a, b = one(FP), two(FP)
    await a._acall("acquire", 5, f"{one.replica}|dead", 0.25, 0)  # a request that never ends: its replica died
    assert b.available(0) == 4
    clock.now += 31  # past REPLICA_TTL without a word from it: its request counts as answered now
    assert b.available(0) == 4
    assert b.available(60) == 5


# ----------------------------------------------------------------------------------------------- holds


async def test_a_hold_after_a_429_reaches_every_replica(replicas: tuple[FakeClock, RedisBudgets, RedisBudgets]) -> None:
    clock, one, two = replicas
    a, b = one(FP), two(FP)
    a.hold_until(time.time() + 30)  # Retry-After: 30
    assert b.held() == pytest.approx(30, abs=1)
    assert b.available(25) == 0
    assert b.available(35) == 5
    token = START_BY.set(time.time() + 5)  # a caller that cannot wait that long is refused at once
    try:
        with pytest.raises(RateLimitError):
            await enter_and_leave(b)
    finally:
        START_BY.reset(token)
    await enter_and_leave(b)  # one that can waits the hold out
    assert clock.waits == [pytest.approx(30, abs=1)]


async def test_a_hold_without_retry_after_lasts_until_the_window_frees(
    replicas: tuple[FakeClock, RedisBudgets, RedisBudgets],
) -> None:
    clock, one, two = replicas
    a, b = one(FP), two(FP)
    await enter_and_leave(a)
    first = clock.now
    clock.now += 20
    b.hold_until(None)
    assert a.held() == pytest.approx(first + WINDOW - clock.now, abs=1e-3)  # Lua prints 14 digits


async def test_a_429_met_by_one_client_holds_back_another(redis_server: RedisServer) -> None:
    config = SandboxConfig(sessions_per_day=20, rate_limit_per_minute=1, retry_after=True)
    window = resolve_window("custom", "2024-01-10", "2024-01-10", "UTC")
    key = SecretStr(DEMO_API_KEY)
    with serve_in_thread(config) as sandbox:
        settings = make_settings(base_url=sandbox.url, redis_url=redis_server.url, rate_limit=50)
        one, another = HardalClient(settings, retry=RetryPolicy(attempts=1)), HardalClient(settings)
        try:
            assert one.fingerprints.of(key) == another.fingerprints.of(key)  # the secret lives in Redis
            assert isinstance(one.budget(key), RedisRateLimiter)
            await one.sessions(key, "demo", window, limit=5)
            assert another.budget(key).available(0) == 49
            with pytest.raises(RateLimitError) as info:
                await one.sessions(key, "demo", window, limit=5, offset=5)  # the sandbox allows 1 a minute
            assert info.value.retry_after
            assert another.budget(key).available(0) == 0
            assert another.budget(key).available(info.value.retry_after + 1) == 50
        finally:
            await one.aclose()
            await another.aclose()
    stored = raw(redis_server)
    for name in stored.keys("*"):
        assert DEMO_API_KEY not in name
        if stored.type(name) == "string":
            assert DEMO_API_KEY not in stored.get(name)


# ------------------------------------------------------------------------------------------- isolation


async def test_keys_are_namespaced_by_fingerprint_and_every_one_expires(
    redis_server: RedisServer, replicas: tuple[FakeClock, RedisBudgets, RedisBudgets]
) -> None:
    _, one, two = replicas
    for _ in range(5):
        await enter_and_leave(one(FP))
    assert two(OTHER).available(0) == 5  # another key's budget is untouched
    await enter_and_leave(two(OTHER))
    one(FP).hold_until(time.time() + 30)
    assert two(OTHER).held() == 0
    stored = raw(redis_server)
    names = set(stored.keys("*"))
    assert names == {
        *(f"hardal:budget:{fp}:{part}" for fp in (FP, OTHER) for part in ("done",)),
        f"hardal:budget:{FP}:hold",
        REPLICAS,
        EPOCH,
    }
    for name in names:
        assert stored.pttl(name) > 0, name  # nothing outlives what it counts for
    async with two(OTHER).slot():
        assert stored.pttl(f"hardal:budget:{OTHER}:flight") > 0


# ------------------------------------------------------------------------------------- many processes

WORKER = """
import json, sys, time, anyio
from hardal_mcp.budget_redis import RedisBudgets
from hardal_mcp.config import Settings

url, limit, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
budgets = RedisBudgets(Settings(redis_url=url, rate_limit=limit), window=0.5)
limiter = budgets("c" * 64)
starts = []

async def one():
    async with limiter.slot():
        starts.append(time.time())
        await anyio.sleep(0.02)  # the request in flight

async def main():
    async with anyio.create_task_group() as beat:
        beat.start_soon(budgets.run)  # as a serving replica does
        async with anyio.create_task_group() as tg:
            for _ in range(requests):
                tg.start_soon(one)
        beat.cancel_scope.cancel()
    await budgets.aclose()

limiter.available(0)  # announced
print("ready", flush=True)
sys.stdin.readline()  # go
anyio.run(main)
print(json.dumps(starts))
"""


def start_workers(url: str, processes: int, limit: int, requests: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(limit), str(requests)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def finish_workers(procs: list[subprocess.Popen[str]]) -> tuple[list[float], str]:
    starts: list[float] = []
    errors = ""
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        errors += err
        starts += json.loads(out.splitlines()[-1])
    return sorted(starts), errors


def most_in_any_window(starts: list[float], window: float = 0.5) -> int:
    """A slot stays taken from its start until a window after its answer: no window may hold more starts
    than the limit."""
    return max(sum(1 for t in starts if s <= t < s + window) for s in starts)


def test_processes_sharing_redis_never_exceed_the_limit_in_any_window(redis_server: RedisServer) -> None:
    starts, errors = finish_workers(start_workers(redis_server.url, processes=3, limit=5, requests=8))
    assert len(starts) == 24
    assert most_in_any_window(starts) <= 5
    assert PASSWORD not in errors


def test_processes_keep_the_limit_while_redis_is_killed_and_started_again(redis_server: RedisServer) -> None:
    procs = start_workers(redis_server.url, processes=3, limit=6, requests=14)
    time.sleep(0.6)  # mid-run (14 × 3 requests at 6 per 0.5 s take 3.5 s or more)
    redis_server.kill()
    time.sleep(0.8)
    redis_server.start()  # empty
    starts, errors = finish_workers(procs)
    assert len(starts) == 42  # every request made it, none lost to the fault
    assert most_in_any_window(starts) <= 6
    assert "does not answer" in errors  # each replica said so, once
    assert errors.count("does not answer") <= 3
    assert PASSWORD not in errors and redis_server.url not in errors


# -------------------------------------------------------------------------------------- Redis lost


async def test_redis_lost_mid_run_then_back_keeps_the_limit(
    redis_server: RedisServer,
    replicas: tuple[FakeClock, RedisBudgets, RedisBudgets],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock, one, two = replicas
    one.settings = two.settings = make_settings(redis_url=redis_server.url, rate_limit=10)
    a, b = one(FP), two(FP)
    for _ in range(3):
        await enter_and_leave(b)
    for _ in range(3):
        await enter_and_leave(a)
    assert a.available(0) == b.available(0) == 4
    assert one.replicas == two.replicas == 2  # (serving replicas announce themselves every BEAT seconds)

    redis_server.kill()
    assert a.available(0) == 0  # alone: its share is 10 ÷ 2 replicas, and it saw 6 answers in the window
    clock.now += WINDOW + 1
    for _ in range(5):
        await enter_and_leave(a)  # a fresh window: its share, no more
    assert a.available(0) == 0
    token = START_BY.set(time.time() + 1)
    try:
        with pytest.raises(RateLimitError):  # the sixth would wait for the window: refused, not sent
            await enter_and_leave(a)
    finally:
        START_BY.reset(token)
    lost = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING  # said once, not per request

    redis_server.start()  # empty: --save ''
    clock.now += 3  # past the next try
    # b never saw Redis go, but sees its data renewed: what others sent since its last view is unknown to it
    # (here a's five), so it counts the window full from now, and writes that back.
    assert b.available(0) == 0
    await a.write_back()  # (what a serving replica's announcements do once Redis answers again)
    assert a.available(0) == 0 and b.available(0) == 0
    clock.now += WINDOW + 1  # once that window has passed, the budget is whole again, and shared
    assert a.available(0) == b.available(0) == 10
    for _ in range(5):
        await enter_and_leave(a)
        await enter_and_leave(b)
    assert a.available(0) == 0 and b.available(0) == 0  # ten in the window: the limit, never more
    stored = raw(redis_server)
    assert stored.zcard(f"hardal:budget:{FP}:done") == 10
    assert any("answers again" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert PASSWORD not in record.getMessage() and redis_server.url not in record.getMessage()


async def test_a_replica_whose_view_is_stale_when_redis_goes_sends_nothing_into_a_full_window(
    redis_server: RedisServer, replicas: tuple[FakeClock, RedisBudgets, RedisBudgets]
) -> None:
    clock, one, two = replicas
    one.settings = two.settings = make_settings(redis_url=redis_server.url, rate_limit=10)
    a, b = one(FP), two(FP)
    assert b.available(0) == 10
    assert a.available(0) == 10  # a's last view: an empty window, two replicas
    for _ in range(9):
        await enter_and_leave(b)  # ... which b then all but fills, unseen by a
    redis_server.kill()
    # Alone, a's share would be 5 of a window it saw empty: sent, those would meet Hardal's 429s. It counts
    # the window full instead, until a window has passed.
    assert a.available(0) == 0
    clock.now += WINDOW / 2
    assert a.available(0) == 0
    clock.now += WINDOW / 2 + 1
    assert a.available(0) == 5  # its share of a fresh window


# ------------------------------------------------------------------------------------------- start-up


def test_the_start_is_refused_without_redis_and_the_url_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_binary()
    monkeypatch.setenv("HARDAL_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("HARDAL_STORE", "off")
    assert main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "HARDAL_REDIS_URL" in err and "did not answer" in err
    assert PASSWORD not in err and "127.0.0.1" not in err


def test_a_wrong_password_is_refused_at_the_start(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDAL_REDIS_URL", redis_server.url.replace(PASSWORD, "wrong-pw"))
    monkeypatch.setenv("HARDAL_STORE", "off")
    assert main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials in HARDAL_REDIS_URL" in err
    assert "wrong-pw" not in err


def test_the_secret_is_made_once_and_shared(redis_server: RedisServer) -> None:
    from hardal_mcp.keys import Fingerprints

    settings = make_settings(redis_url=redis_server.url)
    key = SecretStr(DEMO_API_KEY)
    assert Fingerprints.for_settings(settings).of(key) == Fingerprints.for_settings(settings).of(key)
    assert raw(redis_server).pttl(SECRET) > 0
