"""Issue 20: do a sampled answer's 95% margins hold the truth, in every budget regime?

    python -m bench.calibration [--sites N] [--per-day N] [--page N] [--record]

`--record` also writes the table into bench/RESULTS.md, as its section `## Calibration` (replaced, the
rest of the file kept).

In process, no network: the planner reads the sandbox app through an ASGI transport, on sites with
day-to-day drift and time-of-day effects (`hardal_mcp.sandbox.data`). For each seeded site (a website id),
a 30-day window is read with an allowance of 1, 2 and 3 pages a day (plus the one request that tells the
window's total); then, after the 3-page read, with the budget spent, the last 7 days of it, from the pages
already read (as `last7days` right after `last30days` is answered). Each
sampled answer's figures — the shares of the country and device lists, their entries' bounce rates and
the window's bounce rate — are set against the truth, the same Digest of every session of the window.

Per regime it reports: the share of figures whose margin held the truth (both sides are rounded to 0.1,
so a figure is held when |estimate - truth| <= margin + 0.05), the mean of |error| / (margin / 1.96)
(about 0.8 when margins are calibrated, below that when they are too wide), the worst miss as a multiple
of its margin, and whether any sampled figure came without a margin. `tests/test_calibration.py` runs it
over fewer sites."""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import httpx2

from hardal_mcp.analytics.digest import Digest, estimate_summary
from hardal_mcp.analytics.schema import Summary
from hardal_mcp.client import HardalClient
from hardal_mcp.config import Settings
from hardal_mcp.params import Window
from hardal_mcp.planner import Allowance, Outcome, Page, Planner, Scope
from hardal_mcp.sandbox import DEMO_API_KEY, SandboxConfig, create_app
from hardal_mcp.sandbox.app import traffic
from hardal_mcp.service import Reading

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
END = date(2026, 6, 5)  # a closed window: its data never changes
DAYS = 30
SPENT_DAYS = 7
REGIMES = ("1 page/day", "2 pages/day", "3 pages/day", "spent budget, last 7 days")
LISTS = ("country", "device")
TRUTH_PAGE = 1000
HEADING = "## Calibration: do sampled margins hold the truth? (issue 20)"
NOTES = (
    "Each sampled answer's country and device shares, their entries' bounce rates and the window's bounce "
    "rate, against the same figures of a whole read; a margin holds when |estimate − truth| ≤ margin + 0.05 "
    "(both rounded to 0.1). Regimes: a 30-day window (UTC) read with 1, 2 and 3 pages a day (plus the "
    "request that tells the window's total), and, after the 3-page read, its last 7 days with the budget "
    "spent (from the pages already read). The sandbox's sites have time-of-day effects (United States at "
    "night, Mobile in the evening, Desktop in office hours) and day-to-day drift; a site is a website id "
    "(`calibration0`, …), pages are a tenth of a day as Hardal's 1,000-session pages are of a "
    "10,000-session day. Calibrated margins give a mean |error| / (margin / 1.96) of about 0.8."
)


@dataclass(frozen=True, slots=True)
class Figure:
    regime: str
    name: str
    estimate: float
    moe: float | None
    truth: float

    @property
    def held(self) -> bool:
        return self.moe is not None and abs(self.estimate - self.truth) <= self.moe + 0.05

    @property
    def z(self) -> float:
        """|error| in standard errors (margin / 1.96); inf without a margin."""
        return abs(self.estimate - self.truth) / (self.moe / 1.96) if self.moe else math.inf


@dataclass(frozen=True, slots=True)
class Row:
    regime: str
    figures: int
    coverage: float
    mean_z: float
    worst: float  # the largest |error| - 0.05 as a multiple of the margin
    without_margin: int


def _figures(summary: Summary) -> Iterator[tuple[str, float, float | None]]:
    """(name, value, margin) of every figure the calibration checks; margins None when exact."""
    moe = summary.totals.moe or {}
    yield "bounce", summary.totals.bounce_pct, moe.get("bounce_pct")
    for b in summary.breakdowns:
        if b.key in LISTS:
            for e in b.top:
                yield f"{b.key}={e.v} share", e.pct, e.moe
                if e.bounce_pct is not None:
                    yield f"{b.key}={e.v} bounce", e.bounce_pct, e.bounce_moe


class Site:
    """One seeded website of the sandbox, read in process through one client (one response cache)."""

    def __init__(self, website_id: str, per_day: int, page: int) -> None:
        self.app = create_app(SandboxConfig(sessions_per_day=per_day, now=NOW))
        self.settings = Settings.model_validate(
            {"api_key": DEMO_API_KEY, "base_url": "http://sandbox.test", "store": "off", "page_size": page}
            | {"rate_limit": 100_000, "redact_pii": False}
        )
        self.client = HardalClient(self.settings, transport=httpx2.ASGITransport(app=self.app))
        self.website_id = website_id

    def requests(self) -> int:
        """Requests the sandbox was sent for this site."""
        return traffic(self.app).site(self.website_id).requests

    async def read(self, days: int, requests: int, consume: Callable[[Page], None]) -> Outcome:
        """The window of `days` days ending at END, read with an allowance of `requests` requests."""
        scope = Scope(self.website_id, window(days))
        assert self.settings.api_key is not None
        planner = Planner(
            self.client,
            self.settings,
            self.settings.api_key,
            scope,
            store=None,
            deadline=anyio.current_time() + 3600,
            allowance=Allowance(requests),
        )
        return await planner.read(consume, max_sessions=10**9)

    async def summary(self, days: int, requests: int) -> Summary:
        reading = Reading(partial(Digest, window(days)))
        outcome = await self.read(days, requests, reading.consume)
        summary: Summary = reading.finish(
            self.website_id, outcome, Digest.summary, partial(estimate_summary, segmented=False)
        )
        return summary


def window(days: int) -> Window:
    return Window("custom", END - timedelta(days=days - 1), END, "UTC")


def _compare(regime: str, estimate: Summary, truth: Summary) -> list[Figure]:
    real = {name: value for name, value, _ in _figures(truth)}
    return [Figure(regime, name, value, moe, real[name]) for name, value, moe in _figures(estimate) if name in real]


async def measure(website_id: str, per_day: int, page: int) -> list[Figure]:
    """Every regime's figures for one site; the truth of each window is read whole with a fresh client."""
    whole = Site(website_id, per_day, TRUTH_PAGE)  # the truth does not depend on the page size
    requests = math.ceil(per_day * 2 / TRUTH_PAGE) * DAYS  # more than a whole read needs
    truth = await whole.summary(DAYS, requests)
    truth_week = await whole.summary(SPENT_DAYS, requests)
    assert truth.coverage.sample is None, "the truth must be read whole"
    assert truth.coverage.complete, "the truth must be read whole"
    figures: list[Figure] = []
    site = Site(website_id, per_day, page)
    for k, regime in enumerate(REGIMES[:3]):
        # A larger plan extends a smaller one and cached pages are free: each regime asks again with a
        # day's page more per day (the first also pays for the request that tells the window's total).
        estimate = await site.summary(DAYS, DAYS + (k == 0))
        assert site.requests() == 1 + (k + 1) * DAYS, "the earlier regime's pages are read again from the cache"
        assert estimate.totals.sessions == truth.totals.sessions, "the window's total is exact"
        assert estimate.series.counts == truth.series.counts, "every day's total is exact"
        figures += _compare(regime, estimate, truth)
    # The budget spent: the last days of the window, from the pages read for it.
    figures += _compare(REGIMES[3], await site.summary(SPENT_DAYS, 0), truth_week)
    return figures


def table(figures: list[Figure]) -> list[Row]:
    rows = []
    for regime in REGIMES:
        mine = [f for f in figures if f.regime == regime]
        if not mine:
            continue
        with_margin = [(f, f.moe) for f in mine if f.moe]
        rows.append(
            Row(
                regime,
                len(mine),
                sum(f.held for f in mine) / len(mine),
                statistics.fmean(f.z for f, _ in with_margin) if with_margin else math.inf,
                max(((abs(f.estimate - f.truth) - 0.05) / moe for f, moe in with_margin), default=math.inf),
                len(mine) - len(with_margin),
            )
        )
    return rows


async def run(sites: int, per_day: int, page: int) -> list[Figure]:
    figures: list[Figure] = []
    for n in range(sites):
        figures += await measure(f"calibration{n}", per_day, page)
    return figures


def markdown(rows: list[Row], sites: int, per_day: int, page: int) -> str:
    lines = [
        f"{sites} sites × {DAYS} days, {per_day:,} sessions a day on average, pages of {page}:",
        "",
        "| regime | figures | margin held the truth | mean \\|error\\| / (margin / 1.96) | worst miss (× margin) "
        "| without a margin |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.regime} | {r.figures} | {r.coverage:.1%} | {r.mean_z:.2f} | {r.worst:.2f} | {r.without_margin} |"
        for r in rows
    ]
    return "\n".join(lines)


def record(section: str) -> None:
    """Put `section` into bench/RESULTS.md in place of its previous version (or at the end)."""
    path = Path(__file__).with_name("RESULTS.md")
    text = path.read_text(encoding="utf-8")
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=48)
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--record", action="store_true", help="also write the table into bench/RESULTS.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures = anyio.run(run, args.sites, args.per_day, args.page)
    table_text = markdown(table(figures), args.sites, args.per_day, args.page)
    print(table_text)
    if args.record:
        stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {time.monotonic() - started:.0f} s"
        record(f"{HEADING}\n\n`python -m bench.calibration` · {stamp}\n\n{table_text}\n\n{NOTES}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
