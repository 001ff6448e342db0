"""Every analysis tool checked, through a real MCP client, against the sessions the same client lists:
the expected figures are computed here, from the listed sessions, by plain independent code."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

from mcp.client import Client

from .conftest import WINDOW, WINDOW_START, connect
from .test_server import all_sessions, text_of


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, {**WINDOW, **arguments})
    assert not result.is_error, text_of(result)
    return result.structured_content  # type: ignore[return-value]


def top_counts(breakdown: dict[str, Any]) -> dict[str, int]:
    return {entry["v"]: entry["n"] for entry in breakdown["top"]}


def by_key(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(item for item in items if item["key"] == key)


def bounced(s: dict[str, Any]) -> bool:
    return s["page_views"] <= 1


def pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", text)))


def steps_reached(pages: list[str], steps: list[str]) -> int:
    """Plain subsequence matching: how many steps the path visits in order."""
    k = 0
    for page in pages:
        if k < len(steps) and pattern(steps[k]).fullmatch(page):
            k += 1
    return k


async def test_summary_agrees_with_the_sessions_listed() -> None:
    async with connect() as client:
        sessions = await all_sessions(client, **WINDOW)
        summary = await call(client, "summarize_sessions", top=50)
    totals = summary["totals"]
    assert totals["sessions"] == len(sessions) == summary["coverage"]["scanned"]
    assert summary["coverage"]["complete"] is True
    visits = Counter(s["visitor_id"] for s in sessions)
    assert totals["visitors"] == len(visits)
    assert totals["returning"] == sum(1 for n in visits.values() if n > 1)
    assert totals["page_views"] == sum(s["page_views"] for s in sessions)
    assert totals["events"] == sum(s["events"] for s in sessions)
    assert totals["bounces"] == sum(map(bounced, sessions))
    devices = Counter(s["device"] for s in sessions)
    assert top_counts(by_key(summary["breakdowns"], "device")) == dict(devices)
    sources = Counter(s["fields"].get("utm_source", "(none)") for s in sessions)
    assert top_counts(by_key(summary["breakdowns"], "utm_source")) == dict(sources)
    landing = by_key(summary["pages"], "landing")
    assert sum(landing["top"][i]["n"] for i in range(len(landing["top"]))) + landing["other"] == len(sessions)
    for entry in landing["top"][:5]:
        assert entry["n"] == sum(1 for s in sessions if s["pages"][0] == entry["v"])
    days = Counter(datetime.fromisoformat(s["started_at"]).date() for s in sessions)
    assert summary["series"]["unit"] == "day"
    assert summary["series"]["counts"] == [days[WINDOW_START + timedelta(days=i)] for i in range(3)]


async def test_a_segment_digest_and_list_hold_exactly_the_matching_sessions() -> None:
    segment = {"device": "MOBILE", "bounced": False, "fields": {"utm_medium": ["organic", "cpc"]}}
    async with connect() as client:
        sessions = await all_sessions(client, **WINDOW)
        summary = await call(client, "summarize_sessions", segment=segment)
        listed: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = await call(client, "list_sessions", segment=segment, limit=7, offset=offset)
            listed += page["sessions"]
            offset = page["page"]["next_offset"]
    expected = [
        s
        for s in sessions
        if s["device"] == "Mobile" and not bounced(s) and s["fields"].get("utm_medium") in ("organic", "cpc")
    ]
    assert 0 < len(expected) < len(sessions)
    assert summary["totals"]["sessions"] == len(expected) == summary["coverage"]["matched"]
    assert summary["coverage"]["scanned"] == len(sessions)
    assert summary["segment"] and "device" in summary["segment"]
    assert [s["id"] for s in listed] == [s["id"] for s in expected]


async def test_returning_is_judged_over_the_whole_window() -> None:
    async with connect() as client:
        sessions = await all_sessions(client, **WINDOW)
        returning = await call(client, "summarize_sessions", segment={"returning": True})
        first_timers: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:  # rows beyond the output budget come on the next page
            page = await call(client, "list_sessions", segment={"returning": False}, limit=200, offset=offset)
            first_timers += page["sessions"]
            offset = page["page"]["next_offset"]
    visits = Counter(s["visitor_id"] for s in sessions)
    assert returning["totals"]["sessions"] == sum(1 for s in sessions if visits[s["visitor_id"]] > 1)
    assert [s["id"] for s in first_timers] == [s["id"] for s in sessions if visits[s["visitor_id"]] == 1]


async def test_funnel_counts_match_an_independent_count() -> None:
    steps = ["/", "/products*", "/cart", "/checkout"]
    async with connect() as client:
        sessions = await all_sessions(client, **WINDOW)
        funnel = await call(client, "analyze_funnel", steps=steps, breakdown="device")
    reached = [steps_reached(s["pages"], steps) for s in sessions]
    expected = [sum(1 for r in reached if r > k) for k in range(len(steps))]
    assert [step["sessions"] for step in funnel["steps"]] == expected
    assert expected == sorted(expected, reverse=True)
    mobile = next(g for g in funnel["groups"] if g["v"] == "Mobile")
    mobile_reached = [steps_reached(s["pages"], steps) for s in sessions if s["device"] == "Mobile"]
    assert mobile["steps"] == [sum(1 for r in mobile_reached if r > k) for k in range(len(steps))]
    worst = funnel["worst_step"]
    for sid in funnel["dropped"]:  # example sessions really stopped before the worst step
        session = next(s for s in sessions if s["id"] == sid)
        assert steps_reached(session["pages"], steps) == worst - 1


async def test_paths_around_a_page_match_an_independent_count() -> None:
    async with connect() as client:
        sessions = await all_sessions(client, **WINDOW)
        paths = await call(client, "analyze_paths", page="/cart", top=50)
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    for s in sessions:
        pages = s["pages"]
        for i, page in enumerate(pages):
            if page == "/cart":
                before[pages[i - 1] if i else "(entered here)"] += 1
                after[pages[i + 1] if i + 1 < len(pages) else "(exited here)"] += 1
    assert paths["views"] == sum(before.values()) > 0
    assert top_counts(paths["previous"]) == dict(before)
    assert top_counts(paths["next"]) == dict(after)


async def test_comparison_states_the_previous_window_and_its_figures() -> None:
    days = (date.fromisoformat(WINDOW["end_date"]) - WINDOW_START).days + 1
    before_end = WINDOW_START - timedelta(days=1)
    before = {"start_date": (before_end - timedelta(days=days - 1)).isoformat(), "end_date": before_end.isoformat()}
    async with connect() as client:
        now_sessions = await all_sessions(client, **WINDOW)
        before_sessions = await all_sessions(client, **before)
        result = await client.call_tool("summarize_sessions", {**WINDOW, "compare": "previous_period"})
    comparison = result.structured_content["comparison"]
    assert comparison["previous"]["start"] == before["start_date"]
    assert comparison["previous"]["end"] == before["end_date"]
    sessions = by_key([{"key": c["name"], **c} for c in comparison["totals"]], "sessions")
    assert (sessions["now"], sessions["before"]) == (len(now_sessions), len(before_sessions))
    assert sessions["delta"] == len(now_sessions) - len(before_sessions)
    assert before["start_date"] in text_of(result)
