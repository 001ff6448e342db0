"""The sandbox: a faithful fake of Hardal's session routes (reference §1, §2.1, §2.2, §6).

Driven through its ASGI app, as clients see it: auth, errors, parameters, paging, determinism,
activity consistency, rate limiting, and the analytic effects its synthetic data promises.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import mean
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import httpx2
import pytest

from hardal_mcp.sandbox import (
    DEMO_API_KEY,
    DEMO_WEBSITE_ID,
    PRESETS,
    SandboxConfig,
    create_app,
    serve_in_thread,
    traffic,
)
from hardal_mcp.sandbox import faults as f
from hardal_mcp.sandbox.app import SlidingWindowLimiter
from hardal_mcp.sandbox.data import BLOCK, Site, _block, find_session
from hardal_mcp.sandbox.query import Window, resolve_window

# A Wednesday, 18:00 in Istanbul; New York switched to daylight time three days earlier (9 March).
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
ISTANBUL = ZoneInfo("Europe/Istanbul")
AUTH = {"Authorization": f"Bearer {DEMO_API_KEY}"}
SESSIONS = f"/api/websites/{DEMO_WEBSITE_ID}/sessions"
SESSION_KEYS = ["id", "visitorId", "startedAt", "duration", "pageViews", "events", "pages", "browser", "os",
                "device", "country", "fields"]  # fmt: skip
EVENT_KEYS = ["id", "type", "name", "timestamp", "url", "properties"]


@asynccontextmanager
async def sandbox(
    config: SandboxConfig | None = None,
    auth: bool = True,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(config or SandboxConfig(sessions_per_day=50, now=NOW), sleep=sleep, clock=clock)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://sandbox.test", headers=AUTH if auth else None
    ) as client:
        yield client


async def get_json(client: httpx2.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


async def all_sessions(client: httpx2.AsyncClient, path: str = SESSIONS, **params: Any) -> list[dict[str, Any]]:
    """Every session of a window, paging with limit=1000."""
    sessions: list[dict[str, Any]] = []
    while True:
        body = await get_json(client, path, limit=1000, offset=len(sessions), **params)
        sessions += body["sessions"]
        if not body["pagination"]["hasMore"]:
            assert len(sessions) == body["pagination"]["total"]
            return sessions


def started(session: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(session["startedAt"])


def seconds(duration: str) -> int:
    assert re.fullmatch(r"\d+s", duration), duration
    return int(duration[:-1])


def assert_error(response: httpx2.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == status
    for word in words:
        assert word in body["error"]["message"]


# --- Interface and auth ---------------------------------------------------------------------------


def test_public_defaults() -> None:
    config = SandboxConfig()
    assert (DEMO_API_KEY, DEMO_WEBSITE_ID) == ("demo-key", "demo")
    assert (config.sessions_per_day, config.api_key, config.rate_limit_per_minute) == (1500, "demo-key", None)
    assert (config.retry_after, config.now, config.seed) == (False, None, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        SandboxConfig(now=datetime(2025, 1, 1))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": DEMO_API_KEY},
                                     {"Authorization": f"Basic {DEMO_API_KEY}"}])  # fmt: skip
async def test_bad_or_missing_key_is_401(headers: dict[str, str]) -> None:
    async with sandbox(auth=False) as client:
        for path in (SESSIONS, f"{SESSIONS}/sess_20250312_0_abcd/activity"):
            assert_error(await client.get(path, headers=headers), 401, "Invalid API key")


async def test_configured_key_is_the_one_accepted() -> None:
    config = SandboxConfig(sessions_per_day=5, now=NOW, api_key="hk_other")
    async with sandbox(config, auth=False) as client:
        assert (await client.get(SESSIONS, headers={"Authorization": "Bearer hk_other"})).status_code == 200
        assert_error(await client.get(SESSIONS, headers=AUTH), 401)


async def test_unknown_websites_and_routes_are_404() -> None:
    async with sandbox() as client:
        assert_error(await client.get("/api/websites/missing/sessions"), 404, "missing")
        assert_error(await client.get("/api/websites/missing-shop/sessions"), 404)
        assert_error(await client.get(SESSIONS, params={"targetSignalId": "missing_signal"}), 404)
        assert_error(await client.get("/api/websites/" + "x" * 65 + "/sessions"), 404)
        assert_error(await client.get("/api/websites/demo/metrics"), 404)
        assert_error(await client.post(SESSIONS), 405)


# --- The sessions list ----------------------------------------------------------------------------


async def test_session_objects_have_the_documented_shape() -> None:
    async with sandbox() as client:
        sessions = await all_sessions(client, timeframe="last7days")
    assert len(sessions) > 200
    for s in sessions:
        assert list(s) == SESSION_KEYS
        assert re.fullmatch(r"sess_\d{8}_\d+_[0-9a-f]{4}", s["id"])
        assert re.fullmatch(r"v_[0-9a-f]{12}", s["visitorId"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00", s["startedAt"])
        assert s["pageViews"] == len(s["pages"]) >= 1
        assert s["events"] >= s["pageViews"]
        assert all(page.startswith("/") for page in s["pages"])
        assert s["device"] in {"Desktop", "Mobile", "Tablet"}
        assert isinstance(s["browser"], str)
        assert isinstance(s["os"], str)
        assert len(s["country"]) > 2
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in s["fields"].items())
        if s["pageViews"] == 1 and s["events"] == 1:
            assert s["duration"] == "0s"  # a bounce with nothing after its page view
        elif s["pageViews"] > 1:
            assert seconds(s["duration"]) >= s["pageViews"] - 1
    devices = Counter(s["device"] for s in sessions)
    assert devices["Desktop"] > devices["Mobile"] > devices["Tablet"] > 0
    assert Counter(s["country"] for s in sessions).most_common(1)[0][0] == "Turkey"
    assert {s["browser"] for s in sessions if s["os"] == "iOS"} <= {"Safari", "Chrome"}
    assert all(s["os"] in {"iOS", "Android"} for s in sessions if s["device"] != "Desktop")


async def test_default_request_is_today_so_far() -> None:
    # The docs leave `custom` without dates unsaid; the sandbox reads it as today (in the timezone).
    async with sandbox() as client:
        body = await get_json(client, SESSIONS)
        assert body == await get_json(client, SESSIONS, timeframe="today")
    pagination = body["pagination"]
    assert pagination["limit"] == 1000
    assert pagination["offset"] == 0
    assert 0 < pagination["total"] == len(body["sessions"])
    for s in body["sessions"]:
        assert started(s).date() == date(2025, 3, 12)
        assert started(s) <= NOW


async def test_today_grows_with_now_and_never_shows_the_future() -> None:
    async with sandbox() as client:
        earlier = await all_sessions(client, timeframe="today")
    async with sandbox(SandboxConfig(sessions_per_day=50, now=NOW + timedelta(hours=3))) as client:
        later = await all_sessions(client, timeframe="today")
        whole_yesterday = await all_sessions(client, timeframe="yesterday")
    assert all(started(s) <= NOW for s in earlier)
    assert any(started(s) > NOW for s in later)
    # The sessions that had started by NOW are the same ones later on: the newest come first.
    assert later[len(later) - len(earlier) :] == earlier
    assert len(earlier) < len(whole_yesterday)


async def test_pagination_arithmetic() -> None:
    async with sandbox() as client:
        total = (await get_json(client, SESSIONS, timeframe="last7days", limit=1))["pagination"]["total"]
        body = await get_json(client, SESSIONS, timeframe="last7days", limit=7, offset=10)
        assert body["pagination"] == {"total": total, "limit": 7, "offset": 10, "currentPage": 2,
                                      "totalPages": math.ceil(total / 7), "hasMore": True}  # fmt: skip
        assert len(body["sessions"]) == 7
        tail = await get_json(client, SESSIONS, timeframe="last7days", limit=100, offset=total - 3)
        assert len(tail["sessions"]) == 3
        assert tail["pagination"]["hasMore"] is False
        past = await get_json(client, SESSIONS, timeframe="last7days", limit=100, offset=total + 50)
        assert past["sessions"] == []
        assert past["pagination"]["hasMore"] is False
        capped = await get_json(client, SESSIONS, timeframe="last7days", limit=5000)
        assert capped["pagination"]["limit"] == 1000
        assert capped["pagination"]["totalPages"] == math.ceil(total / 1000)


@pytest.mark.parametrize(("timezone", "offsets"), [("Europe/Istanbul", {"+03:00"}),
                                                   ("America/New_York", {"-05:00", "-04:00"}),
                                                   ("UTC", {"+00:00"})])  # fmt: skip
async def test_paging_a_window_yields_each_session_once_newest_first(timezone: str, offsets: set[str]) -> None:
    zone = ZoneInfo(timezone)
    async with sandbox() as client:
        first = await get_json(client, SESSIONS, timeframe="last7days", timezone=timezone, limit=100)
        total, pages = first["pagination"]["total"], first["pagination"]["totalPages"]
        sessions = first["sessions"]
        for page in range(1, pages):
            sessions += (await get_json(client, SESSIONS, timeframe="last7days", timezone=timezone,
                                        limit=100, offset=100 * page))["sessions"]  # fmt: skip
    assert pages == math.ceil(total / 100)
    assert total > 250
    assert len(sessions) == total == len({s["id"] for s in sessions})
    starts = [started(s) for s in sessions]
    assert starts == sorted(starts, reverse=True)
    today = NOW.astimezone(zone).date()
    assert {t.date() for t in starts} == {today - timedelta(days=n) for n in range(7)}
    assert all(t <= NOW and t.utcoffset() == zone.utcoffset(t.replace(tzinfo=None)) for t in starts)
    assert {s["startedAt"][-6:] for s in sessions} == offsets


async def test_same_query_same_bytes_and_timezones_share_sessions() -> None:
    query = {"startDate": "2025-03-01", "endDate": "2025-03-05", "limit": "1000"}
    async with sandbox() as client:
        first = (await client.get(SESSIONS, params=query)).content
        again = (await client.get(SESSIONS, params=query)).content
        in_utc = await all_sessions(client, startDate="2025-03-01", endDate="2025-03-05", timezone="UTC")
    async with sandbox() as fresh_app:
        assert (await fresh_app.get(SESSIONS, params=query)).content == first == again
    async with sandbox(SandboxConfig(sessions_per_day=50, now=NOW, seed=1)) as other_seed:
        assert (await other_seed.get(SESSIONS, params=query)).content != first

    in_istanbul = json.loads(first)["sessions"]
    # Istanbul's window is the UTC one moved three hours earlier; where they overlap, they agree.
    overlap_start, overlap_end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 5, 21, tzinfo=UTC)
    shared_utc = {s["id"]: started(s) for s in in_utc if started(s) < overlap_end}
    shared_ist = {s["id"]: started(s) for s in in_istanbul if started(s) >= overlap_start}
    assert shared_utc == shared_ist
    assert len(shared_utc) > 150
    assert all(started(s) < overlap_start for s in in_istanbul if s["id"] not in shared_utc)


async def test_custom_ranges() -> None:
    async with sandbox() as client:
        week = await get_json(client, SESSIONS, timeframe="last7days")
        assert week == await get_json(client, SESSIONS, startDate="2025-03-06")  # start only: to today
        assert week == await get_json(client, SESSIONS, startDate="2025-03-06", endDate="2025-03-12")
        # A full ISO datetime counts by its date.
        assert week == await get_json(client, SESSIONS, startDate="2025-03-06T23:59:59+03:00")
        month = await get_json(client, SESSIONS, timeframe="last30days")
        assert month["pagination"]["total"] > 4 * week["pagination"]["total"]
        one_day = await all_sessions(client, endDate="2025-03-10")  # end only: that day
        assert {started(s).date() for s in one_day} == {date(2025, 3, 10)}
        future = await get_json(client, SESSIONS, startDate="2025-04-01", endDate="2025-04-30")
        assert future["pagination"]["total"] == 0
        assert future["pagination"]["totalPages"] == 0


async def test_each_site_has_its_own_data_and_target_signal_selects_it() -> None:
    async with sandbox() as client:
        demo = await get_json(client, SESSIONS, timeframe="yesterday")
        other = await get_json(client, "/api/websites/other-shop/sessions", timeframe="yesterday")
        via_target = await get_json(client, SESSIONS, timeframe="yesterday", targetSignalId="other-shop")
        assert via_target == other
        assert {s["id"] for s in demo["sessions"]}.isdisjoint({s["id"] for s in other["sessions"]})
        assert await get_json(client, SESSIONS, timeframe="yesterday", isHybrid="true") == demo


# --- Bad parameters ---------------------------------------------------------------------------------

BAD_SESSION_PARAMS = [
    ({"timeframe": "lastweek"}, "timeframe"),
    ({"startDate": "2025-13-01"}, "startDate"),
    ({"endDate": "12/03/2025"}, "endDate"),
    ({"startDate": "2025-03-10", "endDate": "2025-03-01"}, "endDate"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"timezone": "../etc/passwd"}, "timezone"),
    ({"limit": "0"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "2.5"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"isHybrid": "maybe"}, "isHybrid"),
    ({"targetSignalId": "no spaces"}, "targetSignalId"),
]
BAD_ACTIVITY_PARAMS = [
    ({"orderBy": "size"}, "orderBy"),
    ({"order": "up"}, "order"),
    ({"page": "0"}, "page"),
    ({"limit": "-5"}, "limit"),
    ({"timezone": "Nowhere"}, "timezone"),
]


@pytest.mark.parametrize(("params", "name"), BAD_SESSION_PARAMS)
async def test_bad_session_parameters_are_400_naming_the_parameter(params: dict[str, str], name: str) -> None:
    async with sandbox() as client:
        assert_error(await client.get(SESSIONS, params=params), 400, name)


@pytest.mark.parametrize(("params", "name"), BAD_ACTIVITY_PARAMS)
async def test_bad_activity_parameters_are_400_naming_the_parameter(params: dict[str, str], name: str) -> None:
    async with sandbox() as client:
        session_id = (await get_json(client, SESSIONS, limit=1))["sessions"][0]["id"]
        assert_error(await client.get(f"{SESSIONS}/{session_id}/activity", params=params), 400, name)


# --- Session activity ---------------------------------------------------------------------------------


async def activity(client: httpx2.AsyncClient, session_id: str, **params: Any) -> dict[str, Any]:
    return await get_json(client, f"{SESSIONS}/{session_id}/activity", **params)


async def test_activity_is_consistent_with_its_session() -> None:
    async with sandbox() as client:
        sessions = await all_sessions(client, timeframe="last7days")
        sample = sorted(sessions, key=lambda s: s["events"])[-25:] + sessions[::40]
        for s in sample:
            body = await activity(client, s["id"], limit=500, order="asc")
            assert list(body) == ["events", "totalCount", "page", "pageSize", "hasMore"]
            assert (body["totalCount"], body["page"], body["pageSize"], body["hasMore"]) == (s["events"], 1, 500, False)
            events = body["events"]
            assert len(events) == s["events"] == len({e["id"] for e in events})
            assert all(list(e) == EVENT_KEYS and e["id"].startswith("evt_") for e in events)
            assert [e["url"] for e in events if e["type"] == "pageview"] == s["pages"]
            assert all(e["name"] == "page_view" for e in events if e["type"] == "pageview")
            assert all(e["url"] in s["pages"] for e in events)
            times = [datetime.fromisoformat(e["timestamp"]) for e in events]
            assert times == sorted(times)
            assert started(s) == times[0]
            assert times[-1] <= started(s) + timedelta(seconds=seconds(s["duration"]))
            assert all(e["timestamp"].endswith("+03:00") for e in events)
            names = [e["name"] for e in events]
            assert ("purchase" in names) == ("/checkout/success" in s["pages"])
            descending = await activity(client, s["id"], limit=500)  # order defaults to desc
            assert descending["events"] == events[::-1]


async def test_purchases_carry_a_value() -> None:
    async with sandbox(SandboxConfig(sessions_per_day=200, now=NOW)) as client:
        buyers = [s for s in await all_sessions(client, timeframe="last7days") if "/checkout/success" in s["pages"]]
        assert buyers
        for s in buyers[:10]:
            events = (await activity(client, s["id"], limit=500, order="asc"))["events"]
            purchase = next(e for e in events if e["name"] == "purchase")
            assert purchase["url"] == "/checkout/success"
            assert re.fullmatch(r"\d+\.\d\d", purchase["properties"]["value"])
            assert purchase["properties"]["currency"] == "TRY"


async def test_activity_pages_orders_and_timezones() -> None:
    async with sandbox() as client:
        sessions = await all_sessions(client, timeframe="last7days")
        s = max(sessions, key=lambda s: s["events"])
        assert s["events"] >= 8
        full = (await activity(client, s["id"], limit=500, order="asc"))["events"]
        pieces: list[dict[str, Any]] = []
        for page in range(1, math.ceil(len(full) / 3) + 1):
            body = await activity(client, s["id"], page=page, limit=3, order="asc")
            assert body["page"] == page
            assert body["pageSize"] == 3
            assert body["totalCount"] == len(full)
            assert body["hasMore"] == (page * 3 < len(full))
            pieces += body["events"]
        assert pieces == full
        beyond = await activity(client, s["id"], page=99, limit=3)
        assert beyond["events"] == []
        assert beyond["hasMore"] is False
        assert len((await activity(client, s["id"]))["events"]) == min(50, len(full))  # default page size
        assert (await activity(client, s["id"], limit=9999))["pageSize"] == 500

        by_name = (await activity(client, s["id"], limit=500, orderBy="name", order="asc"))["events"]
        assert [e["name"] for e in by_name] == sorted(e["name"] for e in full)
        by_type = (await activity(client, s["id"], limit=500, orderBy="type", order="desc"))["events"]
        assert [e["type"] for e in by_type] == sorted((e["type"] for e in full), reverse=True)

        in_new_york = (await activity(client, s["id"], limit=500, order="asc", timezone="America/New_York"))["events"]
        assert [e["id"] for e in in_new_york] == [e["id"] for e in full]
        assert [datetime.fromisoformat(e["timestamp"]) for e in in_new_york] == [
            datetime.fromisoformat(e["timestamp"]) for e in full
        ]
        new_york = ZoneInfo("America/New_York")
        for e in in_new_york:
            moment = datetime.fromisoformat(e["timestamp"])
            assert moment.utcoffset() == new_york.utcoffset(moment.astimezone(new_york).replace(tzinfo=None))


async def test_unknown_sessions_are_404() -> None:
    async with sandbox() as client:
        real = (await get_json(client, SESSIONS, timeframe="yesterday", limit=1))["sessions"][0]["id"]
        day, index, suffix = real.removeprefix("sess_").split("_")
        forged_suffix = f"{(int(suffix, 16) + 1) % 0x10000:04x}"
        for session_id in (
            f"sess_{day}_{index}_{forged_suffix}",  # wrong check digits
            f"sess_{day}_{int(index) + 100000}_{suffix}",  # beyond the day's sessions
            f"sess_{day}_0{index}_{suffix}",  # not the canonical spelling
            "sess_20250230_1_abcd",  # no such date
            "sess_abc123456",  # the docs' example id
        ):
            assert_error(await client.get(f"{SESSIONS}/{session_id}/activity"), 404, "Session not found")
        # A session belongs to its own site only.
        assert_error(await client.get(f"/api/websites/other-shop/sessions/{real}/activity"), 404)
        assert (await client.get(f"/api/websites/other-shop/sessions/{real}/activity",
                                 params={"targetSignalId": DEMO_WEBSITE_ID})).status_code == 200  # fmt: skip


async def test_sessions_not_yet_started_have_no_activity() -> None:
    later = SandboxConfig(sessions_per_day=50, now=NOW + timedelta(hours=3))
    async with sandbox(later) as client:
        newest = (await get_json(client, SESSIONS, limit=1))["sessions"][0]
    assert started(newest) > NOW
    async with sandbox() as client:
        assert_error(await client.get(f"{SESSIONS}/{newest['id']}/activity"), 404)


# --- Rate limit -------------------------------------------------------------------------------------


async def test_rate_limit_answers_429_after_n_requests() -> None:
    async with sandbox(SandboxConfig(sessions_per_day=5, now=NOW, rate_limit_per_minute=3)) as client:
        assert_error(await client.get(SESSIONS, headers={"Authorization": "Bearer wrong"}), 401)  # not counted
        for _ in range(3):
            assert (await client.get(SESSIONS, params={"limit": 1})).status_code == 200
        limited = await client.get(SESSIONS)
        assert_error(limited, 429, "Rate limit exceeded")
        assert "retry-after" not in limited.headers  # Hardal documents no such header
        assert_error(await client.get(f"{SESSIONS}/sess_20250312_0_abcd/activity"), 429)


async def test_rate_limit_can_send_retry_after() -> None:
    config = SandboxConfig(sessions_per_day=5, now=NOW, rate_limit_per_minute=1, retry_after=True)
    async with sandbox(config) as client:
        assert (await client.get(SESSIONS)).status_code == 200
        limited = await client.get(SESSIONS)
        assert limited.status_code == 429
        assert 59 <= int(limited.headers["retry-after"]) <= 60


async def test_the_rate_limit_counts_its_minute_on_the_injected_clock() -> None:
    now = [1000.0]
    config = SandboxConfig(sessions_per_day=5, now=NOW, rate_limit_per_minute=1, retry_after=True)
    async with sandbox(config, clock=lambda: now[0]) as client:
        assert (await client.get(SESSIONS)).status_code == 200
        now[0] += 59.5
        limited = await client.get(SESSIONS)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"  # the half second left, in whole seconds
        now[0] += 0.5
        assert (await client.get(SESSIONS)).status_code == 200  # a minute on that clock, none in real time


def test_rate_limit_window_slides() -> None:
    clock = [1000.0]
    limiter = SlidingWindowLimiter(2, clock=lambda: clock[0])
    assert limiter.acquire("k") is None
    clock[0] += 30
    assert limiter.acquire("k") is None
    assert limiter.acquire("k") == pytest.approx(30)  # the first request frees its slot at t+60
    assert limiter.acquire("other") is None  # per key
    clock[0] += 30
    assert limiter.acquire("k") is None
    assert limiter.acquire("k") == pytest.approx(30)


# --- What the data shows -------------------------------------------------------------------------------


async def test_the_data_has_the_effects_analysts_look_for() -> None:
    async with sandbox(SandboxConfig(sessions_per_day=200, now=NOW)) as client:
        sessions = await all_sessions(client, timeframe="last30days", timezone="UTC")

    def rate(group: list[dict[str, Any]], hit: Callable[[dict[str, Any]], bool]) -> float:
        return sum(1 for s in group if hit(s)) / len(group)

    def converted(s: dict[str, Any]) -> bool:
        return "/checkout/success" in s["pages"]

    def bounced(s: dict[str, Any]) -> bool:
        return len(s["pages"]) == 1

    by_medium = defaultdict(list)
    for s in sessions:
        by_medium[s["fields"].get("utm_medium", "(none)")].append(s)
    assert rate(by_medium["cpc"], converted) > 2 * rate(by_medium["social"], converted)
    assert rate(by_medium["social"], bounced) > rate(by_medium["cpc"], bounced)
    desktop = [s for s in sessions if s["device"] == "Desktop"]
    mobile = [s for s in sessions if s["device"] == "Mobile"]
    assert rate(mobile, bounced) > rate(desktop, bounced) + 0.05
    assert rate(mobile, converted) < rate(desktop, converted)
    assert 0.3 < rate(sessions, bounced) < 0.5

    per_day = Counter(started(s).date() for s in sessions if started(s).date() < NOW.date())
    weekend = mean(n for day, n in per_day.items() if day.weekday() >= 5)
    weekday = mean(n for day, n in per_day.items() if day.weekday() < 5)
    assert weekend < 0.9 * weekday
    sale_days = Counter(started(s).date() for s in sessions if s["fields"].get("utm_campaign") == "flash_sale")
    assert len(sale_days) >= 4
    assert max(per_day.values()) > 1.5 * sorted(per_day.values())[len(per_day) // 2]

    last_week = [s for s in sessions if started(s) > NOW - timedelta(days=7)]
    visits = Counter(s["visitorId"] for s in last_week)
    assert 0.2 < sum(1 for n in visits.values() if n >= 2) / len(visits) < 0.4
    assert any("user_id" in s["fields"] for s in sessions)
    assert any(page.startswith("/search?q=") for s in sessions for page in s["pages"])

    # Rare visitor-typed junk that consumers must sanitise: odd unicode, e-mail addresses, huge values.
    def junk(s: dict[str, Any]) -> bool:
        texts = [*s["pages"], *s["fields"].values()]
        return any("@" in t or len(t) > 200 or any(ord(c) > 0x2000 or ord(c) < 0x20 for c in t) for t in texts)

    assert 0 < sum(map(junk, sessions)) < 0.01 * len(sessions)


async def test_json_is_faithful_to_the_generated_data() -> None:
    # The renderer writes JSON by hand for speed; it must agree with the data, odd characters included.
    async with sandbox(SandboxConfig(sessions_per_day=200, now=NOW)) as client:
        sessions = await all_sessions(client, timeframe="last30days")
    site = Site(0, DEMO_WEBSITE_ID, 200)
    for s in sessions:
        generated = find_session(site, s["id"])
        assert generated is not None
        assert s["pages"] == list(generated.pages)
        assert (s["fields"], s["visitorId"]) == (generated.fields, generated.visitor_id)
        assert started(s).timestamp() == generated.started


async def test_a_big_site_serves_pages_quickly() -> None:
    # Quick because the work is the page's, not the offset's: only the blocks of sessions the page shows
    # are generated. Counted in generated blocks rather than timed, so a slow machine cannot fail it.
    _block.cache_clear()
    async with sandbox(SandboxConfig(sessions_per_day=20_000, now=NOW)) as client:
        body = await get_json(client, SESSIONS, timeframe="last30days", limit=1000, offset=300_000)
    generated = _block.cache_info().misses
    assert len(body["sessions"]) == 1000
    assert body["pagination"]["total"] > 500_000
    assert 1 <= generated <= 1000 // BLOCK + 3  # the page's blocks (+1 for an unaligned start, +1 per day edge)
    # ... and the blocks are kept, so the same page again generates nothing.
    async with sandbox(SandboxConfig(sessions_per_day=20_000, now=NOW)) as client:
        again = await get_json(client, SESSIONS, timeframe="last30days", limit=1000, offset=300_000)
    assert again == body
    assert _block.cache_info().misses == generated


# --- Serving ---------------------------------------------------------------------------------------------


def test_serve_listens_on_loopback_and_keeps_stdout_clean() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = f"from hardal_mcp.sandbox import SandboxConfig, serve; serve(port={port}, config=SandboxConfig(10))"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # uvicorn says when it listens: no polling
            if b"Uvicorn running on" in line:
                break
        else:
            raise AssertionError("the sandbox exited without listening")
        response = httpx2.get(f"http://127.0.0.1:{port}{SESSIONS}", headers=AUTH, params={"limit": 2})
        assert response.status_code == 200
        assert len(response.json()["sessions"]) <= 2
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=10)
    assert stdout == b""  # uvicorn's access log goes to stderr too, so stdout stays usable for MCP stdio
    assert b"GET /api/websites/demo/sessions" in stderr


# --- Faults -----------------------------------------------------------------------------------------------


def faulty(faults: dict[str, f.Fault]) -> SandboxConfig:
    return SandboxConfig(sessions_per_day=50, now=NOW, faults=faults)


def sessions_of(site: str) -> str:
    return f"/api/websites/{site}/sessions"


WEEK: dict[str, str | int] = {"timeframe": "last7days", "limit": 100}


def test_no_faults_by_default_and_faults_are_checked() -> None:
    assert SandboxConfig().faults == {}
    assert SandboxConfig().fault_for("demo") is None
    for name, fault in PRESETS.items():
        assert isinstance(fault, f.Fault), name
    config = faulty({"flaky": f.Slow(), "*": f.Drift()})
    assert config.fault_for("flaky") == f.Slow()
    assert config.fault_for("other") == f.Drift()
    with pytest.raises(TypeError):
        config.faults["x"] = f.Slow()  # type: ignore[index]
    with pytest.raises(ValueError, match="website id"):
        faulty({"../x": f.Slow()})
    with pytest.raises(ValueError, match="Fault"):
        faulty({"x": "slow"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="status"):
        f.ErrorStatus(status=200)
    with pytest.raises(ValueError, match="times"):
        f.Slow(times=-1)


async def test_a_fault_acts_on_its_requests_of_its_website_only() -> None:
    app = create_app(faulty({"flaky": f.ErrorStatus(status=503, times=2, after=1), "*": f.Slow(delay=0)}))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://sandbox.test", headers=AUTH
    ) as client:
        statuses = [(await client.get(sessions_of("flaky"), params=WEEK)).status_code for _ in range(4)]
        assert statuses == [200, 503, 503, 200]
        assert (await client.get(f"{sessions_of('flaky')}/sess_20250312_0_abcd/activity")).status_code == 404
        assert (await client.get(sessions_of("steady"), params=WEEK)).status_code == 200
        assert (await client.get(sessions_of("flaky"), headers={"Authorization": "Bearer no"})).status_code == 401
    record = traffic(app)
    assert record.requests("flaky") == 6  # both routes, counted on arrival, auth failures too
    assert [h.status for h in record.site("flaky").hits] == [200, 503, 503, 200, 404, 401]
    assert [h.route for h in record.site("flaky").hits][-2:] == ["activity", "sessions"]
    assert len(record.site("flaky").served) == 200  # the two answered pages
    assert record.requests("steady") == 1
    assert record.requests("never") == 0


async def test_without_faults_only_requests_are_recorded() -> None:
    app = create_app(SandboxConfig(sessions_per_day=50, now=NOW))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://sandbox.test", headers=AUTH
    ) as client:
        for _ in range(3):
            await get_json(client, SESSIONS, **WEEK)
    record = traffic(app).site(DEMO_WEBSITE_ID)
    assert record.requests == len(record.hits) == 3
    assert not record.served  # a long-running sandbox keeps no sessions it need not


async def test_error_status_bodies_and_retry_after_forms() -> None:
    config = faulty({
        "plain": f.ErrorStatus(status=429),
        "seconds": f.ErrorStatus(status=429, retry_after=1.2),
        "date": f.ErrorStatus(status=503, retry_after=1, http_date=True),
        "echo": f.ErrorStatus(status=500, echo_auth=True),
    })  # fmt: skip
    async with sandbox(config) as client:
        plain = await client.get(sessions_of("plain"))
        assert_error(plain, 429, "Rate limit exceeded")
        assert "retry-after" not in plain.headers
        before = time.time()
        seconds = await client.get(sessions_of("seconds"))
        assert_error(seconds, 429)
        assert seconds.headers["retry-after"] == "2"  # whole seconds, rounded up
        dated = await client.get(sessions_of("date"))
        assert_error(dated, 503, "Service unavailable")
        when = email.utils.parsedate_to_datetime(dated.headers["retry-after"]).timestamp()
        assert before + 1 <= when <= time.time() + 2
        echo = await client.get(sessions_of("echo"))
        assert_error(echo, 500, f"Bearer {DEMO_API_KEY}")


async def test_bodies_that_break_a_client() -> None:
    config = faulty({"proxy": f.ProxyPage(status=504, echo_auth=True), "cut": f.Truncated(keep=0.3),
                     "shape": f.WrongShape()})  # fmt: skip
    async with sandbox(config) as client:
        page = await client.get(sessions_of("proxy"))
        assert page.status_code == 504
        assert page.headers["content-type"].startswith("text/html")
        assert "<h1>504 Gateway Time-out</h1>" in page.text
        assert DEMO_API_KEY in page.text
        whole = await client.get(SESSIONS, params=WEEK)
        cut = await client.get(sessions_of("cut"), params=WEEK)
        assert cut.status_code == 200
        assert int(cut.headers["content-length"]) == len(cut.content) < len(whole.content)
        with pytest.raises(json.JSONDecodeError):
            cut.json()
        shape = await get_json(client, sessions_of("shape"), **WEEK)
        assert set(shape) == {"results", "count"}
        assert shape["count"] == len(shape["results"]) == 100
        activity = await get_json(client, f"{sessions_of('shape')}/{shape['results'][0]['id']}/activity")
        assert set(activity) == {"results", "count"}


async def test_slow_answers_come_late() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # records the delay instead of waiting it out
        waits.append(seconds)

    async with sandbox(faulty({"slow": f.Slow(delay=0.3, after=1)}), sleep=sleep) as client:
        first = await get_json(client, sessions_of("slow"), **WEEK)
        assert waits == []  # before `after`, no delay at all
        second = await get_json(client, sessions_of("slow"), **WEEK)
        assert waits == [0.3]
        await get_json(client, SESSIONS, **WEEK)  # other sites are never slowed
        assert waits == [0.3]
    assert second == first  # late, but the same answer


def test_a_dropped_connection_breaks_off_mid_body() -> None:
    with serve_in_thread(faulty({"drop": f.Drop(keep_bytes=40, times=1)})) as served:
        url = f"{served.url}{sessions_of('drop')}"
        with pytest.raises(httpx2.RemoteProtocolError):
            httpx2.get(url, headers=AUTH, params=WEEK)
        assert httpx2.get(url, headers=AUTH, params=WEEK).status_code == 200
        assert [h.status for h in traffic(served.app).site("drop").hits] == [200, 200]


async def test_schema_drift_varies_per_session_and_is_fixed_per_id() -> None:
    async with sandbox(faulty({})) as client:
        plain = (await get_json(client, sessions_of("drifting"), timeframe="last7days", limit=1000))["sessions"]
    async with sandbox(faulty({"drifting": f.Drift(echo_auth=True)})) as client:
        drifted = (await get_json(client, sessions_of("drifting"), timeframe="last7days", limit=1000))["sessions"]
    variants: Counter[str] = Counter()
    for original, s in zip(plain, drifted, strict=True):
        variant = f.drift_variant(original["id"])
        variants[variant] += 1
        if variant == "no_id":
            assert s["id"] is None
            continue
        assert s["id"] == original["id"]
        if variant == "documented":
            assert s == original
        elif variant == "snake_case":
            assert {"visitor_id", "started_at", "page_views"} <= s.keys()
            assert s["duration"] == seconds(original["duration"])
        elif variant == "unit_durations":
            assert re.fullmatch(r"(\d+h)?(\d+m)?(\d+s)?", s["duration"])
            assert isinstance(s["pageViews"], str)
            assert isinstance(s["events"], float)
        elif variant == "extra_keys":
            assert {"engagement", "tags", "isBot", "debug"} <= s.keys()
            assert DEMO_API_KEY in s["debug"]
        elif variant == "nulls":
            assert s["browser"] is s["fields"] is s["duration"] is None
        elif variant == "missing":
            assert not {"visitorId", "country", "duration", "fields"} & s.keys()
        elif variant == "retyped":
            assert s["country"] == [original["country"]]
    assert set(variants) == set(f.DRIFT_VARIANTS)
    assert f.drift_variant("sess_x") == f.drift_variant("sess_x")


def week_total(site: str) -> int:
    start, end = resolve_window("last7days", None, None, ISTANBUL, NOW)
    return Window(Site(0, site, 50), start, end, NOW).total


async def test_paging_faults() -> None:
    config = faulty({
        "empty": f.EmptyPages(hide_total=True),
        "lying": f.LyingHasMore(),
        "shrinking": f.ShiftingTotal(step=-100),
        "growing": f.ShiftingTotal(step=100, start=0.5),
        "busy": f.HeadInserts(per_request=3),
    })  # fmt: skip
    async with sandbox(config) as client:
        first = await get_json(client, sessions_of("empty"), **WEEK)
        later = await get_json(client, sessions_of("empty"), **WEEK, offset=100)
        assert len(first["sessions"]) == 100
        assert later["sessions"] == []
        assert later["pagination"]["hasMore"] is True
        assert "total" not in later["pagination"]

        total = week_total("lying")
        beyond = await get_json(client, sessions_of("lying"), **WEEK, offset=total)
        assert beyond["sessions"] == []
        assert beyond["pagination"]["hasMore"] is True
        assert beyond["pagination"]["total"] == total

        total = week_total("shrinking")
        totals = [(await get_json(client, sessions_of("shrinking"), **WEEK))["pagination"]["total"] for _ in range(3)]
        assert totals == [total, total - 100, total - 200]
        tail = await get_json(client, sessions_of("shrinking"), **WEEK, offset=total - 350)
        assert tail["pagination"]["total"] == total - 300
        assert len(tail["sessions"]) == 50  # the oldest 300 are gone

        total = week_total("growing")
        totals = [(await get_json(client, sessions_of("growing"), **WEEK))["pagination"]["total"] for _ in range(2)]
        assert totals == [round(total / 2), round(total / 2) + 100]

        total = week_total("busy")
        pages = [await get_json(client, sessions_of("busy"), **WEEK, offset=o) for o in (0, 100)]
        assert [p["pagination"]["total"] for p in pages] == [total + 3, total + 6]
        first_ids = [s["id"] for s in pages[0]["sessions"]]
        second_ids = [s["id"] for s in pages[1]["sessions"]]
        assert second_ids[:3] == first_ids[-3:]  # three more new sessions pushed these onto the next page
        starts = [datetime.fromisoformat(s["startedAt"]) for s in pages[0]["sessions"]]
        assert starts == sorted(starts, reverse=True)
        assert starts[0] <= NOW
        plain = await all_sessions(client, timeframe="last7days")  # another site: ids never collide
        assert not set(first_ids[:3]) & {s["id"] for s in plain}
