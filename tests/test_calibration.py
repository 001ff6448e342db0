"""Issue 20: a sampled answer's margins hold the truth in every budget regime, whatever the time of day does.

In process (the sandbox app through an ASGI transport, no HTTP), on the sandbox's sites with time-of-day
effects and day-to-day drift; `bench.calibration` holds the machinery and prints the table for more sites."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.calibration import DAYS, REGIMES, Site, run, table
from hardal_mcp.analytics.estimate import Design, Estimator, Group, Record, scalar, t95
from hardal_mcp.client import HardalClient
from hardal_mcp.frames import to_sessions
from hardal_mcp.params import Window
from hardal_mcp.planner import Allowance, Page, Planner, Scope, _Day, _spread

from .test_sampling import END, MONTH, SMALL_PAGES, call, exact, make_settings, sampled

PER_DAY, PAGE = 200, 20  # ten pages a day, as Hardal's 1,000-session pages of a 10,000-session day
SITES = 6


@pytest.fixture(scope="module")
def figures() -> Any:
    import anyio

    return anyio.run(run, SITES, PER_DAY, PAGE)


@pytest.mark.parametrize("regime", REGIMES)
def test_margins_hold_the_truth_in_every_regime(figures: Any, regime: str) -> None:
    """At 1, 2 and 3 pages a day and with the budget spent: 90–99% of the 95% margins hold the truth,
    and they are not grossly wide (|error| / standard error averages ≥ 0.5; about 0.8 when calibrated).
    Exact totals stay exact (`bench.calibration.measure` checks every read against the truth)."""
    row = next(r for r in table(figures) if r.regime == regime)
    assert row.figures >= 140
    assert row.without_margin == 0  # every estimated figure carries its margin, bounce rates included
    assert 0.90 <= row.coverage <= 0.99, row
    assert row.mean_z >= 0.5, row


async def test_one_page_a_day_reads_every_hour_of_the_day() -> None:
    """With one page a day the days' pages sit at different places in their days: together they cover
    every hour of the day, not only each day's last hours."""
    hours: set[int] = set()
    zone = ZoneInfo("Europe/Istanbul")

    def consume(page: Page) -> None:
        hours.update(s.started_at.astimezone(zone).hour for s in to_sessions(page.frame) if s.started_at is not None)

    outcome = await Site("hours", PER_DAY, PAGE).read(DAYS, 1 + DAYS, consume)
    assert outcome.design is not None and outcome.design.sampled
    assert hours == set(range(24))


async def test_too_few_days_read_give_no_margin_but_say_why() -> None:
    """When most days cannot get a page, the answer gives no margin as if one could be honest: it says
    what was read and why the window's figures are not estimated."""
    summary = await Site("thin", PER_DAY, PAGE).summary(DAYS, DAYS // 3)
    assert summary.coverage.sample is None
    assert not summary.coverage.complete
    assert summary.totals.moe is None
    assert all(e.moe is None and e.bounce_moe is None for b in summary.breakdowns for e in b.top)
    note = summary.coverage.note or ""
    assert "too few to estimate" in note and "honest margin" in note and "of the sessions read only" in note


def test_one_page_strata_are_measured_by_successive_differences() -> None:
    """Days holding one sampled page each: the variance comes from the differences between neighbouring
    days' estimates (Wolter's successive-difference estimator), not from nothing."""
    pages = {i: Record(scalars={"sessions": 10.0, "bounces": b}) for i, b in enumerate((2.0, 5.0, 3.0, 6.0))}
    master = Record(scalars={"sessions": 40.0, "bounces": 16.0})
    design = Design(
        total=400,
        read=40,
        days=4,
        groups=tuple(Group(population=100, pages=10) for _ in range(4)),
        clusters=tuple((10, g) for g in range(4)),
        day_totals=(100, 100, 100, 100),
        day_of=(0, 1, 2, 3),
    )
    est = Estimator(design, master, pages)
    squares = 30**2 + 20**2 + 30**2  # each day's estimated bounces are 20, 50, 30, 60
    assert est.value(scalar("bounces")) == pytest.approx(160.0)
    assert est.variance(scalar("bounces")) == pytest.approx((1 - 1 / 10) * 4 / (2 * 3) * squares)
    assert est.t == pytest.approx(t95(3))
    _, moe = est.ratio(scalar("bounces"), scalar("sessions"), 100.0)
    assert moe is not None and math.isfinite(moe) and moe > 0


def test_days_of_several_pages_are_measured_in_time_of_day_order() -> None:
    """Pages spread through their days are a systematic sample in the time of day: their differences are
    taken between pages at neighbouring places of the day (whatever the day), not within each day, where
    the spread of the hours would be counted as if the pages had been drawn at random."""
    pages = {i: Record(scalars={"sessions": 10.0, "bounces": b}) for i, b in enumerate((2.0, 5.0, 3.0, 6.0))}
    design = Design(
        total=200,
        read=40,
        days=2,
        groups=(Group(population=100, pages=10), Group(population=100, pages=10)),
        clusters=((10, 0), (10, 0), (10, 1), (10, 1)),
        day_totals=(100, 100),
        day_of=(0, 0, 1, 1),
        places=(0.1, 0.6, 0.3, 0.8),
    )
    est = Estimator(design, Record(scalars={"sessions": 40.0, "bounces": 16.0}), pages)
    # Estimated bounces of each page (5 × its own), in the order of their places: 10, 15, 25, 30.
    squares = 5**2 + 10**2 + 5**2
    assert est.variance(scalar("bounces")) == pytest.approx((1 - 4 / 20) * 4 / (2 * 3) * squares)
    assert est.t == pytest.approx(t95(3))


async def test_every_estimated_figure_carries_its_margin() -> None:
    """Funnel steps' rates from the step before, each list entry's bounce rate, a bounce driver's part of
    a change, the counts around a page: estimated, so each has its margin, in the structure and the text."""
    steps = {"steps": ["/", "/products*", "/products/*", "/cart"], "breakdown": "device"}
    async with sampled() as client:
        funnel = await call(client, "analyze_funnel", **steps, **MONTH)
    async with sampled() as client:
        summary = await call(client, "summarize_sessions", compare="previous_period", **MONTH)
    async with sampled() as client:
        paths = await call(client, "analyze_paths", page="/products*", **MONTH)
    assert funnel["coverage"]["sample"] is not None
    assert all(step["prev_moe"] is not None for step in funnel["steps"][2:])
    assert re.search(r"% ±[\d.]+ of step 1 · [\d.]+% ±[\d.]+ of step 2", funnel["_text"])
    assert summary["coverage"]["sample"] is not None
    for b in summary["breakdowns"]:
        assert all(e["bounce_moe"] is not None for e in b["top"] if e.get("bounce_pct") is not None)
    assert re.search(r" b\d+±[\d.]+%", summary["_text"])
    duration = summary["totals"]["duration"]
    assert duration["median"] is None and duration["p90"] is None  # a sample's quantiles: no margin, not shown
    assert "median and p90 are not estimated" in summary["_text"]
    drivers = [m for b in summary["comparison"]["breakdowns"] for m in b["bounce_drivers"]]
    assert drivers and all(m["bounce_moe"] is not None for m in drivers)
    assert re.search(r"bounce-rate change from: \S+ [+−-][\d.]+ ±[\d.]+ pts", summary["_text"])
    assert paths["coverage"]["sample"] is not None
    assert set(paths["moe"]) == {"visits", "views"} and all(m > 0 for m in paths["moe"].values())


async def test_a_sampled_series_is_per_day_with_margins_where_estimated() -> None:
    """A sampled two-day window is shown per day, not per hour: pages are runs of consecutive sessions,
    so most hours have no page (they were shown as 0, with no margin), while the days' totals are exact.
    A day's count of a segment is estimated from its own pages: it has its margin."""
    short = await Site("hourly", PER_DAY, PAGE).summary(2, 7)
    truth = await Site("hourly", PER_DAY, 1000).summary(2, 10)
    assert short.coverage.sample is not None and truth.coverage.sample is None
    assert truth.series.unit == "hour"
    assert short.series.unit == "day" and short.series.moe is None
    days = [sum(truth.series.counts[:24]), sum(truth.series.counts[24:])]
    assert short.series.counts == days
    async with sampled() as client:
        whole = await call(client, "summarize_sessions", **MONTH)
    async with sampled() as client:
        mobile = await call(client, "summarize_sessions", segment={"device": "Mobile"}, **MONTH)
    assert whole["series"]["moe"] is None  # exact per day
    assert mobile["coverage"]["sample"] is not None
    assert mobile["series"]["moe"] is not None and all(m is not None and m > 0 for m in mobile["series"]["moe"])
    assert re.search(r"each day's count ±\d+ at most \(95%\)", mobile["_text"])
    async with exact() as client:
        truth_mobile = await call(client, "summarize_sessions", segment={"device": "Mobile"}, **MONTH)
    series = mobile["series"]
    held = [abs(n - t) <= m for n, m, t in zip(series["counts"], series["moe"], truth_mobile["series"]["counts"])]
    assert sum(held) >= 0.85 * len(held), held


def four_day_planner(allowance: int) -> Planner:
    """A planner of the four days to END (pages of 50), for its planning steps alone: it reads nothing."""
    settings = make_settings(**SMALL_PAGES)
    assert settings.api_key is not None
    window = Window("custom", END - timedelta(days=3), END, "UTC")
    return Planner(
        HardalClient(settings),
        settings,
        settings.api_key,
        Scope("demo", window),
        store=None,
        deadline=0.0,
        allowance=Allowance(allowance),
    )


def test_days_without_sessions_do_not_count_against_the_sample() -> None:
    """A day with no session has nothing to read: it does not make a sample look too thin to estimate."""
    first = END - timedelta(days=3)
    planner = four_day_planner(0)
    planner._clusters, planner._days = [50, 50], [0, 0]
    days = [_Day(first, total=300, read={0, 3}, clusters=[0, 1], places=[0.0, 0.5])]
    days += [_Day(first + timedelta(days=i), total=0) for i in range(1, 4)]
    design = planner._design(days, {}, 300, 100)
    assert design is not None
    assert [g.population for g in design.groups] == [300]


def test_a_day_whose_first_read_fell_past_its_end_gets_a_page_first() -> None:
    """More pages to plan than days lacking one: each such day gets one page, once, before the others'."""
    first = END - timedelta(days=3)
    planner = four_day_planner(100)
    lost = [END - timedelta(days=2), END - timedelta(days=1)]
    assert _spread(lost, 5) == lost  # more wanted than there are: each once
    infos = {
        first: _Day(first, total=300, read={2}, clusters=[0], places=[1 / 3]),
        **{d: _Day(d, total=300) for d in lost},  # their one read fell past their end: it told the total only
        END: _Day(END, total=300, read={4}, clusters=[1], places=[2 / 3]),
    }
    picks = planner._picks(infos, 8)
    assert len(picks) == 8 and len(set(picks)) == 8
    assert sorted(d for d, _ in picks[:2]) == lost
