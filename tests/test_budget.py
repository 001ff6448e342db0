"""The rate budget shared between processes: the window arithmetic, slots held in flight and dated by their
answer, entries of crashed processes, holds after a 429, several processes on one file never exceeding the
limit, the client's wiring, two clients with one key against a rate-limited sandbox meeting no 429 (minutes
pass on a virtual clock), and two `hardal-mcp call` processes finding one budget file. No test waits for real
time to pass except where separate processes must share a window."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest
from pydantic import SecretStr

from hardal_mcp.budget import MAX_HOLD, SharedRateLimiter, budget_path, count_available, shared_limiter
from hardal_mcp.client import HardalClient, RateLimiter, RetryPolicy
from hardal_mcp.errors import RateLimitError
from hardal_mcp.params import Window, resolve_window
from hardal_mcp.sandbox import DEMO_API_KEY, SandboxConfig, create_app, serve_in_thread, traffic

from .conftest import ROOT, FakeClock, make_settings  # clocks start at time.time(): holds are wall-clock

KEY = SecretStr(DEMO_API_KEY)
ONE_TRY = RetryPolicy(attempts=1)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entries(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_bytes()))


async def enter_and_leave(limiter: SharedRateLimiter | RateLimiter) -> None:
    async with limiter.slot():
        pass


# ------------------------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("answered", "in_flight", "hold", "seconds", "expected"),
    [
        ([], 0, 0.0, 0, 5),  # an empty window: every slot
        ([990.0, 995.0], 1, 0.0, 0, 2),  # two answered, one in flight
        ([990.0, 995.0], 1, 0.0, 50, 3),  # by 1050 the answer of 990 has left
        ([990.0, 995.0], 1, 0.0, 55, 4),  # ... and the one of 995 (leaves at 1055)
        ([990.0, 995.0], 1, 0.0, 60, 5),  # in flight counts as answered now: gone by 1060
        ([930.0, 995.0], 0, 0.0, 0, 4),  # an answer older than the window counts for nothing
        ([], 0, 1010.0, 5, 0),  # held until 1010: nothing within 5 s
        ([], 0, 1010.0, 10, 5),  # ... everything once the hold ends
        ([991.0, 992.0, 993.0, 994.0, 995.0, 996.0, 997.0], 0, 0.0, 52, 0),  # over-full (another limit): 7 on 5
        ([991.0, 992.0, 993.0, 994.0, 995.0, 996.0, 997.0], 0, 0.0, 53, 1),  # ... one free once 3 have left
    ],
)
def test_count_available(answered: list[float], in_flight: int, hold: float, seconds: float, expected: int) -> None:
    assert count_available(5, 1000.0, hold, answered, in_flight, seconds) == expected


async def test_the_local_limiter_reports_holds_in_available() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    await enter_and_leave(limiter)
    assert limiter.available(0) == 2
    limiter.hold_until(time.time() + 10)
    assert limiter.available(0) == 0
    assert limiter.available(11) == 2
    limiter.hold_until(None)  # a 429 without Retry-After: the window counts as full until its oldest leaves
    assert limiter.available(59) == 0
    assert limiter.available(60) == 3
    limiter.hold_until(time.time() + 10 * MAX_HOLD)
    assert limiter.available(MAX_HOLD + 1) == 3  # an absurd Retry-After is cut


# ------------------------------------------------------------------------------------- one file, shared


async def test_slots_are_counted_across_limiters_sharing_a_file(tmp_path: Path) -> None:
    path = tmp_path / "budget-abc"
    clock = Clock()
    first, second = SharedRateLimiter(path, 3, clock=clock), SharedRateLimiter(path, 3, clock=clock)
    await enter_and_leave(first)
    await enter_and_leave(first)
    assert second.available(0) == 1
    await enter_and_leave(second)
    assert first.available(0) == second.available(0) == 0
    clock.now += 60
    assert first.available(0) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_full_window_waits_for_its_oldest_answer_to_leave(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    path = tmp_path / "budget-abc"
    first, second = (SharedRateLimiter(path, 2, clock=clock, sleep=clock.sleep) for _ in range(2))
    await enter_and_leave(first)
    clock.now += 1
    await enter_and_leave(first)
    clock.now += 58.7  # the oldest answer leaves the window in 0.3 s
    await enter_and_leave(second)
    assert clock.waits == [pytest.approx(0.3, abs=1e-3)]  # for it, and no longer: the other answer is still in
    assert second.available(0) == 0


async def test_a_request_holds_its_slot_in_flight_and_is_dated_by_its_answer(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    path = tmp_path / "budget-abc"
    limiter, other = SharedRateLimiter(path, 2, clock=clock), SharedRateLimiter(path, 2, clock=clock)
    async with limiter.slot():
        assert other.available(0) == 1
        assert limiter.idle is False
        assert len(entries(path)["flight"]) == 1  # type: ignore[arg-type]
        clock.now = 1030.0  # the answer takes 30 s
    assert limiter.idle is True
    assert entries(path)["done"] == [1030.0]
    assert other.available(30) == 1  # dated by the answer (1030), not the start (1000): still in at 1060
    assert other.available(59) == 1
    assert other.available(60) == 2


async def test_the_hold_after_a_429_stops_every_process(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    path = tmp_path / "budget-abc"
    first, second = (SharedRateLimiter(path, 5, clock=clock, sleep=clock.sleep) for _ in range(2))
    first.hold_until(clock.now + 0.4)
    assert second.available(0) == 0
    assert second.available(1) == 5
    await enter_and_leave(second)
    assert clock.waits == [pytest.approx(0.4, abs=1e-3)]


async def test_a_hold_without_retry_after_lasts_until_the_window_frees(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    limiter = SharedRateLimiter(tmp_path / "budget-abc", 5, clock=clock)
    limiter.hold_until(None)
    assert entries(limiter.path)["hold"] == 1060.0  # nothing answered here: a minute
    clock.now = 1061.0
    await enter_and_leave(limiter)
    clock.now = 1070.0
    limiter.hold_until(None)
    assert entries(limiter.path)["hold"] == 1121.0  # when the oldest answer (1061) leaves
    limiter.hold_until(1100.0)  # an earlier hold never shortens a longer one
    assert entries(limiter.path)["hold"] == 1121.0
    limiter.hold_until(1070.0 + 10 * MAX_HOLD)
    assert entries(limiter.path)["hold"] == 1070.0 + MAX_HOLD


CRASH = """
import os, sys, anyio
from pathlib import Path
from hardal_mcp.budget import SharedRateLimiter

async def main():
    async with SharedRateLimiter(Path(sys.argv[1]), 1).slot():
        os._exit(3)  # dies mid-request: no answer, no clean-up

anyio.run(main)
"""


async def test_the_entry_of_a_process_that_died_mid_request_is_counted_answered_then_expires(tmp_path: Path) -> None:
    path = tmp_path / "budget-abc"
    done = await anyio.run_process([sys.executable, "-c", CRASH, str(path)], cwd=ROOT, check=False)
    assert done.returncode == 3, done.stderr
    assert len(entries(path)["flight"]) == 1  # type: ignore[arg-type]
    clock = FakeClock(time.time())
    limiter = SharedRateLimiter(path, 1, clock=clock, sleep=clock.sleep)
    assert limiter.available(0) == 0  # the request may have reached Hardal: it counts, as answered now
    assert entries(path)["flight"] == []
    assert limiter.available(60) == 1  # ... for a minute
    clock.now += 60
    await enter_and_leave(limiter)
    assert clock.waits == []


def write_state(path: Path, flight: list[list[object]], done: list[float] | None = None) -> None:
    path.write_bytes(json.dumps({"hold": 0.0, "done": done or [], "flight": flight}).encode())


def test_an_in_flight_entry_older_than_the_request_timeout_plus_a_minute_expires(tmp_path: Path) -> None:
    path = tmp_path / "budget-abc"
    host, alive = socket.gethostname(), os.getppid()  # a process that is alive, but not answering
    write_state(path, [["a", host, alive, 1000.0], ["b", "elsewhere", 999_999_999, 1020.0]])
    clock = Clock(1089.0)
    limiter = SharedRateLimiter(path, 2, clock=clock, request_timeout=30.0)
    assert limiter.available(0) == 0  # both hold their slot: not stale yet; another host's pid is not ours to check
    clock.now = 1090.0
    assert limiter.available(0) == 1  # 30 s timeout + 60 s window after its start, the first is gone
    clock.now = 1110.0
    assert limiter.available(0) == 2
    assert entries(path)["flight"] == []


def test_a_garbled_file_starts_afresh_once_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "budget-abc"
    path.write_bytes(b"\x00garbage{")
    limiter = SharedRateLimiter(path, 4, clock=Clock())
    assert limiter.available(0) == 4
    path.write_bytes(b'{"hold": "x", "done": [], "flight": []}')
    assert limiter.available(0) == 4
    said = [r for r in caplog.records if r.name == "hardal_mcp.budget" and r.levelno >= logging.WARNING]
    assert len(said) == 1


def test_a_clock_set_back_does_not_stretch_the_window(tmp_path: Path) -> None:
    path = tmp_path / "budget-abc"
    write_state(path, [], done=[5000.0])  # answered "in the future" of a clock set back an hour
    clock = Clock(1400.0)
    limiter = SharedRateLimiter(path, 1, clock=clock)
    assert limiter.available(0) == 0
    clock.now = 1460.0  # a minute after it was first seen, not an hour
    assert limiter.available(0) == 1


WORKER = """
import json, sys, time, anyio
from pathlib import Path
from hardal_mcp.budget import SharedRateLimiter

path, requests = Path(sys.argv[1]), int(sys.argv[2])
limiter = SharedRateLimiter(path, 5, window=0.5)
starts = []

async def one():
    async with limiter.slot():
        starts.append(time.time())
        await anyio.sleep(0.05)  # the request in flight

async def main():
    async with anyio.create_task_group() as tg:
        for _ in range(requests):
            tg.start_soon(one)

print("ready", flush=True)
sys.stdin.readline()  # go
anyio.run(main)
print(json.dumps(starts))
"""


def test_processes_sharing_a_file_never_exceed_the_limit_in_any_window(tmp_path: Path) -> None:
    path = tmp_path / "budget-abc"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), "8"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:  # both start sending together, once both have their imports done
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.communicate()[1]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    starts: list[float] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        starts += json.loads(out)
    starts.sort()
    assert len(starts) == 16
    for s in starts:  # 5 per 0.5 s window, whichever process sent them
        assert sum(1 for t in starts if s <= t < s + 0.5) <= 5
    # 16 requests at 5 per window need 3 full windows between the first and the last: proof that the two
    # processes shared one budget (alone, each would have sent its 8 within one window).
    assert starts[-1] - starts[0] >= 3 * 0.5 - 0.05


# ----------------------------------------------------------------------------------------- client wiring


def test_the_client_shares_the_budget_when_the_store_is_on(tmp_path: Path) -> None:
    on = HardalClient(make_settings(store=str(tmp_path), base_url="http://127.0.0.1:9"))
    limiter = on.budget(KEY)
    assert isinstance(limiter, SharedRateLimiter)
    assert limiter.path == tmp_path / "budget" / on.fingerprints.of(KEY)
    assert stat.S_IMODE(limiter.path.stat().st_mode) == 0o600
    assert on.budget(KEY) is limiter
    assert DEMO_API_KEY not in limiter.path.name
    assert isinstance(HardalClient(make_settings(store="off")).budget(KEY), RateLimiter)
    injected = HardalClient(make_settings(store=str(tmp_path)), transport=httpx2.ASGITransport(app=create_app()))
    assert isinstance(injected.budget(KEY), RateLimiter)  # the in-process sandbox is not Hardal


def test_no_shared_budget_where_the_directory_cannot_be_made(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    settings = make_settings(store=str(blocker / "dir" / "store.sqlite3"))
    assert budget_path(settings, "abc") == blocker / "dir" / "budget" / "abc"
    assert shared_limiter(settings, "abc") is None
    assert any("unusable" in r.getMessage() for r in caplog.records)
    assert budget_path(make_settings(store=str(tmp_path)), "../etc") is None  # only a fingerprint names a file


WINDOW = resolve_window("custom", (date.today() - timedelta(days=10)).isoformat(), None, "UTC")


@pytest.mark.parametrize("retry_after", [True, False])
async def test_a_429_holds_back_the_other_processes(tmp_path: Path, retry_after: bool) -> None:
    config = SandboxConfig(sessions_per_day=20, rate_limit_per_minute=1, retry_after=retry_after)
    with serve_in_thread(config) as sandbox:
        settings = make_settings(store=str(tmp_path), base_url=sandbox.url, rate_limit=50)
        one, another = HardalClient(settings, retry=ONE_TRY), HardalClient(settings, retry=ONE_TRY)
        try:
            await one.sessions(KEY, "demo", WINDOW, limit=5)
            assert another.budget(KEY).available(0) == 49
            with pytest.raises(RateLimitError) as info:
                await one.sessions(KEY, "demo", WINDOW, limit=5, offset=5)  # the sandbox allows 1 a minute
            if not retry_after:  # nothing says how long: the retries back off, nobody else is held
                assert info.value.retry_after is None
                assert another.budget(KEY).available(0) == 48
                return
            assert another.budget(KEY).available(0) == 0  # the other "process" is held back ...
            ends = info.value.retry_after
            assert another.budget(KEY).available(ends + 1) == 50  # ... until the window frees
        finally:
            await one.aclose()
            await another.aclose()


async def test_a_429_is_reported_to_the_local_budget_too() -> None:
    config = SandboxConfig(sessions_per_day=20, rate_limit_per_minute=1, retry_after=True)
    client = HardalClient(
        make_settings(rate_limit=50), transport=httpx2.ASGITransport(app=create_app(config)), retry=ONE_TRY
    )
    await client.sessions(KEY, "demo", WINDOW, limit=5)
    with pytest.raises(RateLimitError):
        await client.sessions(KEY, "demo", WINDOW, limit=5, offset=5)
    assert client.budget(KEY).available(0) == 0  # the planner plans no more until the Retry-After passes
    assert client.budget(KEY).available(61) == 50
    await client.aclose()


# ---------------------------------------------------------------------------------- the sandbox's stats


async def test_the_sandbox_tells_loopback_clients_its_statuses() -> None:
    app = create_app(SandboxConfig(sessions_per_day=5, rate_limit_per_minute=1))
    headers = {"Authorization": f"Bearer {DEMO_API_KEY}"}
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://sandbox.test") as http:
        for _ in range(3):
            await http.get("/api/websites/demo/sessions", headers=headers)
        await http.get("/api/websites/other/sessions")
        stats = (await http.get("/_sandbox/stats")).json()
    assert stats == {
        "demo": {"requests": 3, "statuses": {"200": 1, "429": 2}},
        "other": {"requests": 1, "statuses": {"401": 1}},
    }
    remote = httpx2.ASGITransport(app=app, client=("203.0.113.9", 4000))
    async with httpx2.AsyncClient(transport=remote, base_url="http://sandbox.test") as http:
        answer = await http.get("/_sandbox/stats")
    assert answer.status_code == 404


# ------------------------------------------------------------------------------------------- end to end


async def read_window(client: HardalClient, window: Window) -> int:
    """Every page of `window`, as a scan reads them; the sessions read."""
    offset, read = 0, 0
    while True:
        page = await client.sessions(KEY, "demo", window, limit=20, offset=offset)
        read += len(page)
        if len(page) < 20:
            return read
        offset += 20


async def test_two_clients_with_one_key_share_the_budget_and_meet_no_429(tmp_path: Path) -> None:
    """Two clients with the same key, each on its own limiter over one budget file, read together from a
    sandbox that answers 429 past `limit` requests a minute: both read everything, and the sandbox never had
    to say 429. Alone, each would spend the whole limit at once. The minutes pass on a virtual clock."""
    limit = 8
    clock = FakeClock(time.time())
    app = create_app(SandboxConfig(sessions_per_day=60, rate_limit_per_minute=limit), clock=clock)

    budgets = tmp_path / "budget"
    budgets.mkdir(mode=0o700)

    def budget(fingerprint: str) -> SharedRateLimiter:
        return SharedRateLimiter(budgets / fingerprint, limit, clock=clock, sleep=clock.sleep)

    settings = make_settings(rate_limit=limit, store=str(tmp_path))  # the key's fingerprint is the store's
    clients = [
        HardalClient(settings, transport=httpx2.ASGITransport(app=app), retry=ONE_TRY, budgets=budget) for _ in range(2)
    ]
    end = date.today() - timedelta(days=20)
    windows = [
        resolve_window("custom", (end - timedelta(days=2 + i)).isoformat(), end.isoformat(), "UTC") for i in range(2)
    ]
    began = clock.now
    try:
        async with anyio.create_task_group() as group:
            for client, window in zip(clients, windows, strict=True):
                group.start_soon(read_window, client, window)
    finally:
        for client in clients:
            await client.aclose()
    hits = traffic(app).site("demo").hits
    assert [hit.status for hit in hits] == [200] * len(hits)  # no 429: ONE_TRY would have raised it, too
    assert len(hits) > 2 * limit, "the two clients together needed more than two minutes' budget"
    # Shared, the requests took a minute for each `limit` of them after the first: they waited for each other.
    assert clock.now - began >= 60 * ((len(hits) - 1) // limit)
    assert len([path async for path in anyio.Path(budgets).iterdir()]) == 1  # one file: one budget


def test_two_processes_with_one_key_use_one_budget_file(tmp_path: Path) -> None:
    """Two `hardal-mcp call`s with the same key and HARDAL_STORE, run together, count their requests in one
    budget file: each finds the same file from the key alone."""
    (tmp_path / "store").mkdir()
    with serve_in_thread(SandboxConfig(sessions_per_day=20)) as sandbox:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")},
            "HARDAL_API_KEY": DEMO_API_KEY,
            "HARDAL_WEBSITE_ID": "demo",
            "HARDAL_BASE_URL": sandbox.url,
            "HARDAL_STORE": str(tmp_path / "store"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
        calls = [
            subprocess.Popen(
                [sys.executable, "-m", "hardal_mcp", "call", "list_sessions", "--json", "limit=5"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [call.communicate(timeout=60) for call in calls]
        requests = traffic(sandbox.app).requests("demo")
    for call, (out, err) in zip(calls, outputs, strict=True):
        assert call.returncode == 0, err
        assert json.loads(out)["sessions"]
        assert DEMO_API_KEY not in err
    files = list((tmp_path / "store" / "budget").iterdir())
    assert len(files) == 1
    assert len(entries(files[0])["done"]) == requests >= 2  # type: ignore[arg-type]  # both processes' requests


async def test_a_slot_that_frees_too_late_is_refused_at_once() -> None:
    """Another caller took the slot a plan counted on: a caller with a deadline is told, not kept waiting."""
    from hardal_mcp.budget import START_BY
    from hardal_mcp.client import RateLimiter

    clock = FakeClock(time.time())
    limiter = RateLimiter(1, clock=clock, sleep=clock.sleep)
    async with limiter.slot():
        pass  # the minute's only request
    token = START_BY.set(time.time() + 5)
    try:
        with pytest.raises(RateLimitError) as info:
            async with limiter.slot():
                pass
        assert clock.waits == []  # refused without waiting at all
        assert info.value.retry_after is not None and 55 < info.value.retry_after <= 60
    finally:
        START_BY.reset(token)
    assert limiter.available(61) == 1  # nothing was taken
