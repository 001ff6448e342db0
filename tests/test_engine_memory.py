"""Memory stays bounded for any window: a scan keeps counts of distinct values and columns, never a Python
object per session. Measured with tracemalloc, which sees Python's allocations (the engine's columns live
outside it): digesting four times the sessions, with the same distinct values, must not cost Python
memory in proportion."""

from __future__ import annotations

import tracemalloc
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from hardal_mcp.analytics import Digest, Funnel, PathAnalysis, Segment
from hardal_mcp.frames import parse_sessions_page
from hardal_mcp.params import Window
from hardal_mcp.sandbox.data import Site, day_count, sessions_between
from hardal_mcp.sandbox.query import Renderer

DAY = date(2026, 10, 1)
WINDOW = Window("custom", DAY, DAY + timedelta(days=6), "UTC")
PAGE = 2_000


def one_page() -> pl.DataFrame:
    """A page of sandbox sessions, as the client reads them."""
    site = Site(0, "memory", 3_000)
    day = (DAY - date(1970, 1, 1)).days
    sessions = sessions_between(site, day, 0, min(PAGE, day_count(site, day)))
    body = Renderer(ZoneInfo("UTC")).sessions_body(sessions, {"total": len(sessions)})
    return parse_sessions_page(body.encode()).frame


def python_peak(make: type[Digest] | type[Funnel] | type[PathAnalysis], pages: int, page: pl.DataFrame) -> int:
    """Peak bytes Python allocated while `pages` copies of `page` (each with new ids) were scanned."""
    copies = [page.with_columns(pl.col("id") + f"_{i}", pl.col("visitor_id") + f"_{i % 7}") for i in range(pages)]
    if make is Digest:
        scan: Digest | Funnel | PathAnalysis = Digest(WINDOW, segment=Segment(device=["Mobile", "desktop"]))
    elif make is Funnel:
        scan = Funnel(WINDOW, ["/", "/pricing*", "/checkout*"], breakdown="country")
    else:
        scan = PathAnalysis(WINDOW, "/pricing")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for frame in copies:
            scan.add(frame)
        if isinstance(scan, Digest):
            scan.summary(website_id="m", total=None)
        else:
            scan.result(website_id="m", total=None)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_python_memory_does_not_grow_with_the_sessions_scanned() -> None:
    page = one_page()
    assert page.height >= 1_000
    for make in (Digest, Funnel, PathAnalysis):
        small = python_peak(make, 10, page)  # 10 pages: at least 10,000 sessions
        large = python_peak(make, 40, page)  # four times as many, the same distinct values
        # A Python object per session (a `Session`, an id string in a set) would add tens of MB here.
        assert large < small * 1.25 + 2**20, (make.__name__, small, large)
