"""Windows larger than the rate budget: exact totals, estimates spread over every day, honest margins.

Small pages (50 sessions) and a small rate budget stand in for Hardal's 1,000-session pages and 100
requests a minute, so a sampled month costs milliseconds here. The truth is the same question asked
with a budget that reads everything."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp.client import Client

from hardal_mcp.sandbox import SandboxConfig, create_app
from hardal_mcp.sandbox.app import traffic
from hardal_mcp.server import build_server
from hardal_mcp.store import DayStore

from .conftest import connect, make_settings, sandbox_transport
from .test_server import text_of

END = date.today() - timedelta(days=5)  # closed days: the sandbox's data for them never changes
MONTH = {"start_date": (END - timedelta(days=29)).isoformat(), "end_date": END.isoformat()}
FORTNIGHT = {"start_date": (END - timedelta(days=13)).isoformat(), "end_date": END.isoformat()}
SANDBOX = SandboxConfig(sessions_per_day=300)
SMALL_PAGES = {"page_size": 50}


def sampled(rate_limit: int = 60) -> Any:
    return connect(make_settings(rate_limit=rate_limit, **SMALL_PAGES), SANDBOX)


def exact() -> Any:
    return connect(make_settings(rate_limit=100_000, **SMALL_PAGES), SANDBOX)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return {**result.structured_content, "_text": text_of(result)}


def shares(summary: dict[str, Any], key: str) -> dict[str, tuple[float, float | None]]:
    found = next(b for b in summary["breakdowns"] + summary["pages"] if b["key"] == key)
    return {e["v"]: (e["pct"], e.get("moe")) for e in found["top"]}


async def test_a_sampled_month_has_exact_totals_and_no_empty_day() -> None:
    async with exact() as client:
        truth = await call(client, "summarize_sessions", **MONTH)
    async with sampled() as client:
        estimate = await call(client, "summarize_sessions", **MONTH)
    sample = estimate["coverage"]["sample"]
    assert truth["coverage"]["sample"] is None and truth["coverage"]["complete"]
    assert sample is not None and sample["read"] < sample["of"] == truth["totals"]["sessions"]
    assert sample["days"] == 30  # a page of every day
    assert estimate["totals"]["sessions"] == truth["totals"]["sessions"]
    assert estimate["series"]["counts"] == truth["series"]["counts"]  # per day: exact
    assert min(estimate["series"]["counts"]) > 0
    assert estimate["totals"]["visitors"] is None  # a distinct count is not scaled from a sample
    assert "Estimated from" in estimate["_text"] and "every day" in estimate["_text"]
    assert estimate["totals"]["moe"]["bounce_pct"] > 0


async def test_asking_again_reads_the_same_pages() -> None:
    async with sampled() as client:
        first = await call(client, "summarize_sessions", **FORTNIGHT)
        again = await call(client, "summarize_sessions", **FORTNIGHT)  # the budget is spent: all from the cache
    assert first["breakdowns"] == again["breakdowns"]


async def test_margins_cover_the_truth() -> None:
    """The 95% margins, computed for page sampling, hold the full-data share in ≥ 90% of cases."""
    inside = outside = 0
    for n in range(12):
        site = f"cover{n}"
        async with exact() as client:
            truth = await call(client, "summarize_sessions", website_id=site, **FORTNIGHT)
        async with sampled(rate_limit=34) as client:
            estimate = await call(client, "summarize_sessions", website_id=site, **FORTNIGHT)
        assert estimate["coverage"]["sample"] is not None
        for key in ("country", "device", "browser", "os", "landing", "utm_source"):
            real = shares(truth, key)
            for value, (pct, moe) in shares(estimate, key).items():
                assert moe is not None
                if value in real:
                    if abs(pct - real[value][0]) <= moe + 0.05:  # both sides rounded to 0.1
                        inside += 1
                    else:
                        outside += 1
    assert inside + outside > 300
    assert inside / (inside + outside) >= 0.9, (inside, outside)


async def test_compare_marks_changes_within_their_margin() -> None:
    async with exact() as client:
        truth = await call(client, "summarize_sessions", compare="previous_period", **FORTNIGHT)
    async with sampled(rate_limit=60) as client:
        estimate = await call(client, "summarize_sessions", compare="previous_period", **FORTNIGHT)
    real = {c["name"]: c for c in truth["comparison"]["totals"]}
    changes = {c["name"]: c for c in estimate["comparison"]["totals"]}
    assert changes["sessions"]["delta"] == real["sessions"]["delta"]  # exact on both sides
    assert changes["sessions"]["moe"] is None
    bounce = changes["bounce_pct"]
    assert bounce["moe"] is not None and bounce["noise"] == (abs(bounce["delta"]) <= bounce["moe"])
    assert abs(bounce["delta"] - real["bounce_pct"]["delta"]) <= bounce["moe"] + 0.1


async def test_a_returning_segment_is_never_sampled() -> None:
    async with sampled() as client:
        result = await client.call_tool("summarize_sessions", {"segment": {"returning": True}, **MONTH})
    assert result.is_error
    assert "returning needs every session" in text_of(result)


async def test_list_sessions_with_returning_answers_without_burning_the_minute() -> None:
    app = create_app(SANDBOX)
    server = build_server(make_settings(rate_limit=60, **SMALL_PAGES), transport=httpx2.ASGITransport(app=app))
    async with Client(server) as client:
        result = await client.call_tool("list_sessions", {"segment": {"returning": True}, **MONTH})
        assert result.is_error and "returning needs every session" in text_of(result)
        assert traffic(app).site("demo").requests == 1  # the window's total told it all: one request
        plain = await client.call_tool("list_sessions", {"limit": 5, **MONTH})  # the minute is not spent
    assert not plain.is_error and plain.structured_content["page"]["next_offset"] == 5


async def test_a_part_of_a_sampled_window_is_answered_once_the_budget_is_spent() -> None:
    async with sampled() as client:
        await call(client, "summarize_sessions", **MONTH)  # spends the minute
        part = await call(client, "summarize_sessions", **FORTNIGHT)  # its days' pages are at hand
        result = await client.call_tool("summarize_sessions", {"start_date": "2025-01-01", "end_date": "2025-01-31"})
    assert part["coverage"]["sample"] is not None and part["coverage"]["sample"]["days"] == 14
    assert min(part["series"]["counts"]) > 0
    assert result.is_error and "rate budget" in text_of(result) and "try again in about" in text_of(result)


async def test_sampled_funnels_and_paths_carry_margins_that_hold_the_truth() -> None:
    steps = {"steps": ["/", "/products*", "/cart"], "breakdown": "device"}
    async with exact() as client:
        funnel = await call(client, "analyze_funnel", **steps, **MONTH)
        paths = await call(client, "analyze_paths", page="/products*", **MONTH)
    async with sampled() as client:
        funnel_est = await call(client, "analyze_funnel", **steps, **MONTH)
    async with sampled() as client:
        paths_est = await call(client, "analyze_paths", page="/products*", **MONTH)
    for got in (funnel_est, paths_est):
        assert got["coverage"]["sample"] is not None and "ESTIMATED" in got["_text"]
    assert funnel_est["sessions"] == funnel["sessions"]  # the window total: exact
    for step, real in zip(funnel_est["steps"][1:], funnel["steps"][1:], strict=True):
        assert step["moe"] is not None
        assert abs(step["from_start_pct"] - real["from_start_pct"]) <= step["moe"] + 0.05
    real_groups = {g["v"]: g["conversion_pct"] for g in funnel["groups"]}
    assert all(abs(g["conversion_pct"] - real_groups[g["v"]]) <= g["moe"] + 0.05 for g in funnel_est["groups"][:3])
    real_next = {e["v"]: e["pct"] for e in paths["next"]["top"]}
    inside = [
        abs(e["pct"] - real_next[e["v"]]) <= e["moe"] + 0.05 for e in paths_est["next"]["top"] if e["v"] in real_next
    ]
    assert len(inside) >= 5 and sum(inside) >= 0.8 * len(inside)


def test_margins_widen_with_few_pages_as_students_t_does() -> None:
    from hardal_mcp.analytics.estimate import Z95, t95

    table = {3: 3.182, 5: 2.571, 10: 2.228, 30: 2.042, 100: 1.984}  # two-sided 95% quantiles
    for df, t in table.items():
        assert abs(t95(df) - t) / t < 0.01
    assert t95(10**6) - Z95 < 1e-5 and t95(0) == float("inf")


def stored_days(path: Path) -> int:
    with DayStore(path) as store:
        return store.status().days


async def test_a_read_refused_for_returning_stores_the_window_for_next_time(tmp_path: Path) -> None:
    """The refusal says closed days are being stored in the background: they are."""
    store = tmp_path / "store.sqlite3"
    window = {"start_date": (END - timedelta(days=2)).isoformat(), "end_date": END.isoformat()}
    server = build_server(
        make_settings(store=str(store), rate_limit=100_000, **SMALL_PAGES), transport=sandbox_transport(SANDBOX)
    )
    async with Client(server) as client:
        result = await client.call_tool(
            "summarize_sessions", {"segment": {"returning": True}, "max_sessions": 100, **window}
        )
        assert result.is_error and "being stored in the background" in text_of(result)
        with anyio.fail_after(30):
            while stored_days(store) < 3:  # noqa: ASYNC110  (the fill signals nothing: the file is watched)
                await anyio.sleep(0.05)
        again = await client.call_tool("summarize_sessions", {"segment": {"returning": True}, **window})
    assert not again.is_error, text_of(again)  # every day from the store: read whole


def test_a_last_day_without_sampled_pages_joins_the_group_before_it() -> None:
    """Its sessions are estimated from its neighbour's pages; no page is read with certainty."""
    from hardal_mcp.client import HardalClient
    from hardal_mcp.params import Window
    from hardal_mcp.planner import Allowance, Planner, Scope, _Day

    settings = make_settings(**SMALL_PAGES)
    first, last = END - timedelta(days=1), END
    scope = Scope("demo", Window("custom", first, last, "UTC"))
    planner = Planner(
        HardalClient(settings), settings, settings.api_key, scope, store=None, deadline=0.0, allowance=Allowance(0)
    )
    planner._clusters = [50, 50, 50]  # day 1: three pages; day 2: none (its one read fell past its end)
    planner._days = [0, 0, 0]
    days = [
        _Day(first, total=300, read={0, 2, 4}, clusters=[0, 1, 2], places=[0.0, 1 / 3, 2 / 3]),
        _Day(last, total=300),
    ]
    design = planner._design(days, {}, 600, 150)
    assert design is not None
    assert [g.population for g in design.groups] == [600]  # both days' sessions, one group
    assert [group for _, group in design.clusters] == [0, 0, 0]
