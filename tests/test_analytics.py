"""analytics: a streaming digest whose every figure is checked against numbers worked out by hand."""

from __future__ import annotations

import contextlib
import itertools
import random
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardal_mcp.analytics import (
    Breakdown,
    Comparison,
    Digest,
    Funnel,
    FunnelResult,
    PathAnalysis,
    PathResult,
    Segment,
    Summary,
    compare,
    fmt_duration,
    quantile,
)
from hardal_mcp.errors import InputError
from hardal_mcp.frames import from_sessions
from hardal_mcp.models import Session
from hardal_mcp.params import Window

WEEK = Window("last7days", date(2026, 11, 20), date(2026, 11, 26), "Europe/Istanbul")  # UTC+3 all year


def session(sid: str, **values: Any) -> Session:
    """A session as upstream would send it (camelCase keys, string durations allowed)."""
    return Session.model_validate({"id": sid, **values})


def _s(
    sid: str,
    visitor: str | None,
    start: str | None,
    duration: str | None,
    views: int | None,
    events: int | None,
    pages: list[str],
    device: str,
    browser: str,
    os: str,
    country: str | None,
    fields: dict[str, str],
) -> Session:
    return session(
        sid,
        visitorId=visitor,
        startedAt=start,
        duration=duration,
        pageViews=views,
        events=events,
        pages=pages,
        device=device,
        browser=browser,
        os=os,
        country=country,
        fields=fields,
    )


# Ten sessions; comments give what each contributes. Bounce = at most one page view.
HAND = [
    _s("s1", "v1", "2026-11-20T10:00:00+03:00", "30s", 1, 2, ["/"], "Desktop", "Chrome", "Windows", "Turkey",
       {"utm_source": "google", "utm_medium": "cpc"}),  # bounce
    _s("s2", "v1", "2026-11-21T12:00:00+03:00", "5m", 4, 10, ["/", "/products", "/cart", "/checkout"],
       "Desktop", "Chrome", "Windows", "Turkey", {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "sale"}),
    # 23:30 UTC on the 20th is 02:30 on the 21st in Istanbul
    _s("s3", "v2", "2026-11-20T23:30:00Z", "60", 2, 3, ["/blog", "/"], "Mobile", "Safari", "iOS", "Germany",
       {"utm_source": "twitter"}),
    _s("s4", "v3", "2026-11-22T09:15:00+03:00", "0s", 1, 1, ["/blog"], "mobile", "Safari", "iOS", "Germany",
       {}),  # bounce; lower-case device spelling
    _s("s5", "v4", "2026-11-22T18:00:00+03:00", "2m", 3, 5, ["/", "/products", "/products"], "Desktop", "Firefox",
       "Linux", "United States", {"utm_source": "newsletter", "user_id": "u5"}),
    # no start, no duration, no page-view count (2 pages), no events, no country
    _s("s6", "v5", None, None, None, None, ["/about", "/"], "Tablet", "Chrome", "Android", None, {}),
    _s("s7", "v6", "2026-11-26T23:59:00+03:00", "10m", 6, 20, ["/", "/a", "/b", "/c", "/d", "/checkout"],
       "Desktop", "Chrome", "macOS", "Turkey", {"utm_source": "google", "utm_medium": "organic"}),
    _s("s8", "v7", "2026-11-25T08:00:00+03:00", "15s", 1, 0, ["/pricing"], "Mobile", "Chrome", "Android", "Turkey",
       {"utm_source": "twitter"}),  # bounce
    # no visitor id, no pages; 20:00 UTC on the 19th is 23:00 the 19th in Istanbul: before the window
    _s("s9", None, "2026-11-19T20:00:00Z", "45s", 0, None, [], "Desktop", "Edge", "Windows", "France", {}),  # bounce
    _s("s10", "v2", "2026-11-24T14:00:00+03:00", "1m30s", 2, 4, ["/blog", "/pricing"], "Mobile", "Safari", "iOS",
       "Germany", {"utm_source": "twitter"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def hand() -> Summary:
    digest = Digest(WEEK, top=3)
    digest.add(HAND[:4])
    digest.add([HAND[2], *HAND[4:]])  # s3 arrives twice while paging
    assert digest.count == 10
    return digest.summary(website_id="demo", total=11)


def entries(b: Breakdown) -> list[tuple[str, int, float, float | None]]:
    return [(e.v, e.n, e.pct, e.bounce_pct) for e in b.top]


def by_key(items: list[Breakdown]) -> dict[str, Breakdown]:
    return {b.key: b for b in items}


def test_totals(hand: Summary) -> None:
    t = hand.totals
    assert t.sessions == 10
    assert t.visitors == 7  # v1..v7; s9 has no visitor id
    assert t.returning == 2  # v1 (s1, s2) and v2 (s3, s10)
    assert t.returning_pct == 28.6  # 2 / 7
    assert t.page_views == 22  # 1+4+2+1+3+2+6+1+0+2, s6 counted from its pages
    assert t.events == 45  # 2+10+3+1+5+20+0+4; s6 and s9 report none
    assert t.bounces == 4  # s1, s4, s8, s9
    assert t.bounce_pct == 40.0
    assert t.pages_per_session == 2.2


def test_durations(hand: Summary) -> None:
    # known: 0 15 30 45 60 90 120 300 600 (s6 unknown)
    d = hand.totals.duration
    assert d.unknown == 1
    assert d.mean == 140.0  # 1260 / 9
    assert d.median == 60.0  # the 5th of 9
    assert d.p90 == 360.0  # rank 0.9 * 8 = 7.2: 300 + 0.2 * (600 - 300)


def test_dimension_breakdowns(hand: Summary) -> None:
    b = by_key(hand.breakdowns)
    assert list(b)[:4] == ["country", "device", "browser", "os"]
    # Turkey s1 s2 s7 s8 (bounces s1 s8); Germany s3 s4 s10 (bounce s4); then three of one session, by name
    assert entries(b["country"]) == [("Turkey", 4, 40.0, 50.0), ("Germany", 3, 30.0, 33.3), ("(none)", 1, 10.0, 0.0)]
    assert (b["country"].distinct, b["country"].other) == (5, 2)  # France, United States
    # "mobile" and "Mobile" are one group, shown in the more frequent spelling
    assert entries(b["device"]) == [("Desktop", 5, 50.0, 40.0), ("Mobile", 4, 40.0, 50.0), ("Tablet", 1, 10.0, 0.0)]
    assert (b["device"].distinct, b["device"].other) == (3, 0)
    assert [(e.v, e.n) for e in b["browser"].top] == [("Chrome", 5), ("Safari", 3), ("Edge", 1)]
    assert (b["browser"].distinct, b["browser"].other) == (4, 1)  # Firefox
    assert [(e.v, e.n) for e in b["os"].top] == [("Windows", 3), ("iOS", 3), ("Android", 2)]
    assert (b["os"].distinct, b["os"].other) == (5, 2)  # Linux, macOS


def test_field_breakdowns(hand: Summary) -> None:
    b = by_key(hand.breakdowns)
    assert list(b)[4:] == ["utm_source", "utm_medium", "utm_campaign", "user_id"]
    # google s1 s2 s7 (bounce s1); twitter s3 s8 s10 (bounce s8); missing s4 s6 s9 (bounces s4 s9); newsletter s5
    assert entries(b["utm_source"]) == [
        ("(none)", 3, 30.0, 66.7),
        ("google", 3, 30.0, 33.3),
        ("twitter", 3, 30.0, 33.3),
    ]
    assert (b["utm_source"].distinct, b["utm_source"].other) == (4, 1)
    assert entries(b["utm_medium"]) == [("(none)", 7, 70.0, 42.9), ("cpc", 2, 20.0, 50.0), ("organic", 1, 10.0, 0.0)]
    assert [(e.v, e.n) for e in b["utm_campaign"].top] == [("(none)", 9), ("sale", 1)]
    # an id-like key is counted, not listed
    assert b["user_id"].id_like
    assert [(e.v, e.n) for e in b["user_id"].top] == [("(none)", 9)]
    assert (b["user_id"].distinct, b["user_id"].other) == (2, 1)
    assert hand.other_fields == []


def test_pages(hand: Summary) -> None:
    p = by_key(hand.pages)
    assert list(p) == ["landing", "exit", "viewed", "path"]
    # landing: / s1 s2 s5 s7 (bounce s1); /blog s3 s4 s10 (bounce s4); then /about, /pricing, (none) with 1 each
    assert entries(p["landing"]) == [("/", 4, 40.0, 25.0), ("/blog", 3, 30.0, 33.3), ("(none)", 1, 10.0, 100.0)]
    assert (p["landing"].distinct, p["landing"].other) == (5, 2)
    # exit: / s1 s3 s6; /checkout s2 s7; /pricing s8 s10; /blog, /products, (none)
    assert [(e.v, e.n) for e in p["exit"].top] == [("/", 3), ("/checkout", 2), ("/pricing", 2)]
    assert (p["exit"].distinct, p["exit"].other) == (6, 3)
    # views: / ×6, /blog ×3, /products ×3 (twice in s5), of 22 listed pages
    assert entries(p["viewed"]) == [("/", 6, 27.3, None), ("/blog", 3, 13.6, None), ("/products", 3, 13.6, None)]
    assert (p["viewed"].distinct, p["viewed"].other) == (11, 10)
    # every session has its own path; longer ones end in "…"
    path = p["path"]
    assert path.distinct == 10
    assert path.other == 7
    assert [e.v for e in path.top] == ["(none)", "/", "/ → /a → /b → …"]


def test_paths_show_three_pages_then_an_ellipsis() -> None:
    digest = Digest(WEEK, top=10)
    digest.add(HAND)
    paths = {e.v for e in by_key(digest.summary(website_id="d", total=None).pages)["path"].top}
    assert "/ → /products → /cart → …" in paths  # s2, four pages
    assert "/ → /products → /products" in paths  # s5, exactly three
    assert "/blog → /" in paths


def test_series_is_per_local_day(hand: Summary) -> None:
    s = hand.series
    assert s.unit == "day"
    assert s.start == "2026-11-20"
    # 20: s1 · 21: s2, s3 (23:30 UTC the day before) · 22: s4, s5 · 24: s10 · 25: s8 · 26: s7 (23:59)
    assert s.counts == [1, 2, 2, 0, 1, 1, 1]
    assert s.no_start == 1  # s6
    assert s.outside == 1  # s9


def test_series_is_hourly_for_short_windows() -> None:
    window = Window("custom", date(2026, 11, 20), date(2026, 11, 21), "Europe/Istanbul")
    digest = Digest(window)
    digest.add(HAND[:3])
    s = digest.summary(website_id="d", total=None).series
    assert s.unit == "hour"
    assert s.start == "2026-11-20T00:00+03:00"
    assert len(s.counts) == 48
    assert s.counts[10] == 1  # s1 at 10:00
    assert s.counts[24 + 2] == 1  # s3 at 02:30 on the 21st
    assert s.counts[24 + 12] == 1  # s2 at 12:00
    assert sum(s.counts) == 3


def test_series_follows_daylight_saving_time() -> None:
    # New York falls back on 2026-11-01: that day has 25 hours.
    window = Window("custom", date(2026, 11, 1), date(2026, 11, 1), "America/New_York")
    digest = Digest(window)
    digest.add(
        [
            session("a", startedAt="2026-11-01T01:30:00-04:00"),  # first 01:30 (EDT)
            session("b", startedAt="2026-11-01T01:30:00-05:00"),  # second 01:30 (EST), an hour later
            session("c", startedAt="2026-11-01T23:59:59-05:00"),
            session("d", startedAt="2026-11-02T00:00:00-05:00"),  # the next day
            session("e", startedAt="2026-11-01T05:00:00"),  # naive: read in the window's zone
        ]
    )
    s = digest.summary(website_id="d", total=None).series
    assert len(s.counts) == 25
    assert (s.counts[1], s.counts[2], s.counts[24]) == (1, 1, 1)
    assert s.counts[6] == 1  # 05:00 EST is the 7th elapsed hour
    assert s.outside == 1


def test_examples(hand: Summary) -> None:
    ex = {e.id: e.why for e in hand.examples}
    assert ex == {
        "s7": "longest (10m00s); most page views (6)",
        # bounces with a duration: 0 15 30 45 -> lower median 15
        "s8": "typical bounce: median duration 15s of 4",
        # other sessions with a duration: 60 90 120 300 600 -> 120
        "s5": "typical multi-page session: median duration 2m00s of 5",
    }


def test_coverage(hand: Summary) -> None:
    c = hand.coverage
    assert (c.scanned, c.duplicates, c.total, c.complete) == (10, 1, 11, False)
    assert c.note == (
        "Covers 10 of 11 sessions: the window changed while it was read; ask again for exact figures. "
        "1 repeated session skipped while paging."
    )


@pytest.mark.parametrize(
    ("total", "reason", "complete", "note"),
    [
        (3, None, True, None),
        (None, None, True, None),
        (
            48_213,
            "max_sessions=3 reached; raise it or narrow the window",
            False,
            "Covers 3 of 48,213 sessions: max_sessions=3 reached; raise it or narrow the window.",
        ),
        (None, "time limit", False, "Covers the first 3 (total unknown) sessions: time limit."),
    ],
)
def test_coverage_statements(total: int | None, reason: str | None, complete: bool, note: str | None) -> None:
    digest = Digest(WEEK)
    digest.add(HAND[:3])
    c = digest.summary(website_id="d", total=total, partial_reason=reason).coverage
    assert (c.scanned, c.complete, c.note) == (3, complete, note)


def test_empty_digest() -> None:
    s = Digest(WEEK).summary(website_id="d", total=0)
    assert s.totals.sessions == 0
    assert s.totals.bounce_pct == 0.0
    assert s.totals.duration.median is None
    assert s.series.counts == [0] * 7
    assert s.examples == []
    assert all(b.top == [] for b in s.breakdowns + s.pages)
    assert s.coverage.complete


def test_many_custom_fields_are_capped() -> None:
    digest = Digest(WEEK)
    # key k<i> is set on i sessions: the five most frequent are broken down, the rest only named
    digest.add(session(f"s{n}", fields={f"k{i}": "x" for i in range(n, 30)}) for n in range(30))
    s = digest.summary(website_id="d", total=None)
    assert [b.key for b in s.breakdowns][4:] == ["k29", "k28", "k27", "k26", "k25"]
    assert s.other_fields[:2] == ["k24", "k23"]
    assert len(s.other_fields) == 20


def test_high_cardinality_field_is_id_like() -> None:
    digest = Digest(WEEK)
    digest.add(session(f"s{i}", fields={"gclid_value": f"x{i}", "plan": "pro" if i % 2 else "free"}) for i in range(60))
    b = by_key(digest.summary(website_id="d", total=None).breakdowns)
    assert b["gclid_value"].id_like
    assert b["gclid_value"].distinct == 60
    assert b["gclid_value"].top == []
    assert not b["plan"].id_like


def test_visitor_typed_values_are_cleaned() -> None:
    digest = Digest(WEEK)
    digest.add([session("a", country="Tur\u200bkey\n## Totals", pages=["/x\x1b[31m", "/y→z"]), session("b")])
    s = digest.summary(website_id="d", total=None)
    # cleaned for display, and marked (a hash of the exact value) as not being the value as shown
    country = sorted(e.v for e in by_key(s.breakdowns)["country"].top)
    assert country[0] == "(none)" and re.fullmatch(r"Turkey ## Totals #[0-9a-f]{4}", country[1])
    # an arrow inside a page cannot fake a step
    path = sorted(e.v for e in by_key(s.pages)["path"].top)
    assert path[0] == "(none)" and re.fullmatch(r"/x → /y⇢z #[0-9a-f]{4}", path[1])


@pytest.mark.parametrize("top", [0, -1, 51])
def test_top_is_checked(top: int) -> None:
    with pytest.raises(InputError, match="`top`"):
        Digest(WEEK, top=top)


def test_helpers() -> None:
    assert [fmt_duration(x) for x in (0, 45.4, 185, 3725)] == ["0s", "45s", "3m05s", "1h02m05s"]
    assert quantile([], 0.5) is None
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


# --- properties ----------------------------------------------------------------------------------

ISTANBUL = timezone(timedelta(hours=3))
SESSIONS = st.lists(
    st.fixed_dictionaries(
        {
            "visitorId": st.sampled_from([None, "v1", "v2", "v3", "v4"]),
            "startedAt": st.one_of(
                st.none(),
                st.builds(
                    datetime.replace,
                    st.datetimes(datetime(2026, 11, 18), datetime(2026, 11, 28)),
                    tzinfo=st.sampled_from([ISTANBUL, UTC]),
                ),
            ),
            "duration": st.one_of(st.none(), st.floats(0, 5000)),
            "pageViews": st.one_of(st.none(), st.integers(0, 8)),
            "events": st.one_of(st.none(), st.integers(0, 30)),
            "pages": st.lists(st.sampled_from(["/", "/a", "/b", "/c", "/checkout", "/x|y"]), max_size=6),
            "device": st.sampled_from([None, "", "Desktop", "desktop", "Mobile", "Tablet"]),
            "browser": st.sampled_from([None, "Chrome", "Safari"]),
            "os": st.sampled_from([None, "iOS", "Windows"]),
            "country": st.sampled_from([None, "Turkey", "turkey", "Germany", "Spain", "France"]),
            "fields": st.dictionaries(
                st.sampled_from(["utm_source", "utm_medium", "plan", "user_id"]), st.sampled_from(["a", "b", "c", ""])
            ),
        }
    ),
    max_size=40,
).map(lambda items: [session(f"s{i}", **item) for i, item in enumerate(items)])


def digest_of(pages: list[list[Session]], top: int = 2) -> Summary:
    digest = Digest(WEEK, top=top)
    for page in pages:
        digest.add(page)
    return digest.summary(website_id="d", total=None)


@settings(max_examples=150)
@given(SESSIONS)
def test_counts_add_up(sessions: list[Session]) -> None:
    s = digest_of([sessions])
    n = len(sessions)
    assert s.totals.sessions == n
    for b in s.breakdowns + s.pages:
        whole = sum(len(x.pages) for x in sessions) if b.key == "viewed" else n
        assert sum(e.n for e in b.top) + b.other == whole, b.key
        assert len(b.top) <= 2
        assert b.distinct >= len(b.top)
    assert sum(s.series.counts) + s.series.outside == sum(x.started_at is not None for x in sessions)
    assert s.series.no_start == sum(x.started_at is None for x in sessions)
    assert s.totals.bounces <= n
    assert s.totals.returning <= s.totals.visitors


@settings(max_examples=100)
@given(SESSIONS, st.randoms(use_true_random=False), st.integers(1, 10))
def test_order_and_paging_do_not_matter(sessions: list[Session], rnd: random.Random, page: int) -> None:
    once = digest_of([sessions])
    shuffled = list(sessions)
    rnd.shuffle(shuffled)
    pages = [shuffled[i : i + page] for i in range(0, len(shuffled), page)]
    assert digest_of(pages) == once
    assert digest_of([sessions]) == once
    # every session seen twice: same figures, the repeats counted
    twice = digest_of([sessions, shuffled])
    assert twice.coverage.duplicates == len(sessions)
    assert twice.model_copy(update={"coverage": once.coverage}) == once


# --- segments ------------------------------------------------------------------------------------


def segment_ids(**criteria: Any) -> list[str]:
    """Ids of the HAND sessions a segment keeps, through a whole digest (so `returning` works too)."""
    digest = Digest(WEEK, top=50, segment=Segment.parse(criteria))
    digest.add(HAND)
    s = digest.summary(website_id="d", total=None)
    assert s.coverage.scanned == 10
    assert s.coverage.matched == s.totals.sessions
    kept = {e.v for e in by_key(s.pages)["path"].top}
    return sorted(sid for sid, path in HAND_PATHS.items() if path in kept)


HAND_PATHS = {  # every HAND session has its own path label, so a path top list names the sessions kept
    "s1": "/", "s2": "/ → /products → /cart → …", "s3": "/blog → /", "s4": "/blog", "s5": "/ → /products → /products",
    "s6": "/about → /", "s7": "/ → /a → /b → …", "s8": "/pricing", "s9": "(none)", "s10": "/blog → /pricing",
}  # fmt: skip


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({}, ["s1", "s10", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"]),
        ({"country": "turkey"}, ["s1", "s2", "s7", "s8"]),
        ({"country": ["Germany", "France"]}, ["s10", "s3", "s4", "s9"]),
        ({"country": "(none)"}, ["s6"]),
        ({"device": ["mobile", "TABLET"]}, ["s10", "s3", "s4", "s6", "s8"]),
        ({"browser": "chrome", "os": "android"}, ["s6", "s8"]),
        ({"fields": {"utm_source": "google"}}, ["s1", "s2", "s7"]),
        ({"fields": {"utm_medium": "(none)", "utm_source": ["twitter", "newsletter"]}}, ["s10", "s3", "s5", "s8"]),
        ({"visited": ["/checkout"]}, ["s2", "s7"]),
        ({"visited": ["/products", "/cart"]}, ["s2"]),  # all of them
        ({"visited": "/products*"}, ["s2", "s5"]),
        ({"visited": ["/prod"]}, []),  # no wildcard: the whole page must be equal
        ({"not_visited": ["/blog*", "/"]}, ["s8", "s9"]),
        ({"landing_page": "/blog"}, ["s10", "s3", "s4"]),
        ({"landing_page": "*"}, ["s1", "s10", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]),  # s9 has no pages
        ({"exit_page": ["/checkout", "/pri*"]}, ["s10", "s2", "s7", "s8"]),
        ({"min_duration": 60}, ["s10", "s2", "s3", "s5", "s7"]),  # s6 has no duration
        ({"max_duration": 30}, ["s1", "s4", "s8"]),
        ({"min_duration": 60, "max_duration": 120, "country": "germany"}, ["s10", "s3"]),
        ({"min_pageviews": 3}, ["s2", "s5", "s7"]),  # s6: 2 pages, no count
        ({"bounced": True}, ["s1", "s4", "s8", "s9"]),
        ({"bounced": False, "device": "desktop"}, ["s2", "s5", "s7"]),
        # returning: v1 (s1, s2) and v2 (s3, s10) have two sessions; s9 has no visitor id
        ({"returning": True}, ["s1", "s10", "s2", "s3"]),
        ({"returning": False}, ["s4", "s5", "s6", "s7", "s8", "s9"]),
        ({"returning": True, "device": "mobile"}, ["s10", "s3"]),
        # v1 returns with s2, which is no bounce: the visitor counts over the whole window
        ({"returning": True, "bounced": True}, ["s1"]),
    ],
)
def test_segments(criteria: dict[str, Any], expected: list[str]) -> None:
    assert segment_ids(**criteria) == expected


def test_segment_digest_reports_matched_of_scanned() -> None:
    digest = Digest(WEEK, segment=Segment(returning=True, bounced=True))
    digest.add(HAND[:1])  # s1: its visitor is not known to return yet, so it is held
    digest.add(HAND[1:])  # s2 shows v1 returns
    assert digest.count == 0  # held until the window ends: `returning` is a property of the whole window
    s = digest.summary(website_id="d", total=10)
    assert (s.coverage.scanned, s.coverage.matched, s.coverage.complete) == (10, 1, True)
    assert (s.totals.sessions, s.totals.visitors, s.totals.returning) == (1, 1, 1)
    assert s.segment == "bounced · returning visitors"
    with pytest.raises(RuntimeError):
        digest.add(HAND)


def test_segment_description() -> None:
    seg = Segment(
        country=["Turkey", "Germany"],
        fields={"utm_source": "google"},
        visited=["/checkout"],
        not_visited="/cart",
        landing_page="/blog/*",
        min_duration=30,
        max_duration=600,
        min_pageviews=2,
        bounced=False,
        returning=False,
    )
    assert seg.describe() == (
        "country=Turkey,Germany · utm_source=google · visited /checkout · not visited /cart · landing /blog/* · "
        "duration ≥ 30s · duration ≤ 10m00s · ≥ 2 page views · not bounced · first-time visitors"
    )
    assert Segment().describe() == "all sessions"


@pytest.mark.parametrize(
    ("pattern", "page", "expected"),
    [
        ("/blog/*", "/blog/a", True),
        ("/blog/*", "/blog", False),
        ("/blog/*", "/blog/", True),
        ("*", "", True),
        ("/a*b*c", "/aXbYc", True),
        ("/a*b*c", "/abc", True),
        ("/a*b*c", "/acb", False),
        ("ab*ba", "aba", False),  # head and tail may not overlap
        ("*.pdf", "/files/x.pdf", True),
        ("/p?x=*", "/p?x=1&y=2", True),
        ("/p?x=*", "/p", False),
        ("*a*a*a*a*a*a*a*a*a*b", "a" * 5000, False),  # linear: no backtracking blow-up
    ],
)
def test_page_patterns(pattern: str, page: str, expected: bool) -> None:
    seg = Segment(visited=[pattern])
    assert seg.keep(from_sessions([session("x", pages=[page])])).height == expected


@pytest.mark.parametrize(
    ("criteria", "parameter"),
    [
        ({"visited": [""]}, "segment.visited"),
        ({"visited": ["  "]}, "segment.visited"),
        ({"not_visited": ["/" + "x" * 200]}, "segment.not_visited"),
        ({"landing_page": "/*" * 11}, "segment.landing_page"),
        ({"exit_page": []}, "segment.exit_page"),
        ({"country": []}, "segment.country"),
        ({"device": ["x"] * 51}, "segment.device"),
        ({"fields": {}}, "segment.fields"),
        ({"colour": "red"}, "segment.colour"),
        ({"min_duration": -1}, "segment.min_duration"),
        ({"min_pageviews": "many"}, "segment.min_pageviews"),
        ({"bounced": "perhaps"}, "segment.bounced"),
        ({"min_duration": 60, "max_duration": 30}, "segment"),
    ],
)
def test_malformed_segments(criteria: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InputError) as caught:
        Segment.parse(criteria)
    assert caught.value.parameter == parameter
    assert "Value error" not in str(caught.value)


def test_segment_parse_passes_segments_and_none_through() -> None:
    seg = Segment(bounced=True)
    assert Segment.parse(seg) is seg
    assert Segment.parse(None) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
SEGMENT_KEYS = [*list(Segment.model_fields), "bogus"]


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(SEGMENT_KEYS), JSON, max_size=5))
def test_arbitrary_segments_raise_only_input_errors(criteria: dict[str, Any]) -> None:
    try:
        seg = Segment.parse(criteria)
    except InputError:
        return
    assert seg is not None
    seg.keep(from_sessions([session("x", pages=["/a"], fields={"k": "v"})]))
    seg.describe()


SEGMENTS = st.builds(
    Segment,
    country=st.none() | st.sampled_from(["Turkey", "(none)", "germany"]),
    device=st.none() | st.lists(st.sampled_from(["desktop", "Mobile"]), min_size=1, max_size=2),
    visited=st.none() | st.lists(st.sampled_from(["/", "/a", "/c*", "*"]), min_size=1, max_size=2),
    not_visited=st.none() | st.just(["/checkout"]),
    min_duration=st.none() | st.floats(0, 3000),
    bounced=st.none() | st.booleans(),
    returning=st.none() | st.booleans(),
)


@settings(max_examples=150)
@given(SESSIONS, SEGMENTS, st.randoms(use_true_random=False))
def test_segment_properties(sessions: list[Session], segment: Segment, rnd: random.Random) -> None:
    whole = digest_of([sessions])
    digest = Digest(WEEK, top=2, segment=segment)
    digest.add(sessions)
    part = digest.summary(website_id="d", total=None)
    assert part.coverage.matched == part.totals.sessions <= whole.totals.sessions
    assert part.totals.visitors <= whole.totals.visitors
    assert part.totals.bounces <= whole.totals.bounces
    shuffled = list(sessions)
    rnd.shuffle(shuffled)
    again = Digest(WEEK, top=2, segment=segment)
    for one in shuffled:  # one session per page: `returning` decided as late as possible
        again.add([one])
    assert again.summary(website_id="d", total=None) == part
    # without `returning`, the segment is exactly the filter's choice among the distinct sessions
    if segment.returning is None:
        distinct = list({s.id: s for s in reversed(sessions)}.values())
        assert part.totals.sessions == segment.keep(from_sessions(distinct)).height


# --- funnels -------------------------------------------------------------------------------------


def funnel_of(steps: list[str], sessions: list[Session] = HAND, **options: Any) -> FunnelResult:
    funnel = Funnel(WEEK, steps, **options)
    funnel.add(sessions)
    return funnel.result(website_id="d", total=None)


def test_funnel_by_hand() -> None:
    # "/" then "/checkout": s1 s3 s5 s6 reach step 1 only, s2 and s7 both; s4 s8 s9 s10 never see "/"
    f = funnel_of(["/", "/checkout"], breakdown="device", top=2)
    assert f.sessions == 10
    assert [(s.page, s.sessions, s.from_prev_pct, s.from_start_pct) for s in f.steps] == [
        ("/", 6, None, 100.0),
        ("/checkout", 2, 33.3, 33.3),
    ]
    assert f.worst_step == 2
    assert f.dropped == ["s1", "s3", "s5"]  # the smallest ids of s1 s3 s5 s6
    # Desktop s1 s2 s5 s7 s9; Mobile s3 s4 s8 s10 (one spelled "mobile"); Tablet s6 folds into (other)
    assert [(g.v, g.sessions, g.steps, g.conversion_pct) for g in f.groups] == [
        ("Desktop", 5, [4, 2], 50.0),
        ("Mobile", 4, [1, 0], 0.0),
        ("(other)", 1, [1, 0], 0.0),
    ]


@pytest.mark.parametrize(
    ("steps", "reach"),
    [
        (["/checkout", "/"], [2, 0]),  # order matters: s2 and s7 end on /checkout
        (["/products", "/products"], [2, 1]),  # one page is one step: only s5 views it twice
        (["/blog*", "/pricing"], [3, 1]),  # s3 s4 s10 land on the blog, s10 goes on to /pricing
        (["/", "/products", "/cart", "/checkout"], [6, 2, 1, 1]),  # s2 all the way; s5 stops at /products
        (["*", "*", "*"], [9, 6, 3]),  # sessions with at least 1, 2, 3 pages
    ],
)
def test_funnel_steps(steps: list[str], reach: list[int]) -> None:
    assert [s.sessions for s in funnel_of(steps).steps] == reach


def test_funnel_with_a_field_breakdown_and_a_segment() -> None:
    f = funnel_of(["/", "/checkout"], breakdown="utm_source", segment=Segment(country="turkey"))
    # Turkey: s1 (google, step 1), s2 (google, both), s7 (google, both), s8 (twitter, none)
    assert f.sessions == 4
    assert f.coverage.matched == 4
    assert [(g.v, g.steps) for g in f.groups] == [("google", [3, 2]), ("twitter", [0, 0])]
    assert f.segment == "country=turkey"


def test_funnel_without_entries() -> None:
    f = funnel_of(["/nowhere", "/else"])
    assert [s.sessions for s in f.steps] == [0, 0]
    assert f.worst_step is None
    assert f.dropped == []


@pytest.mark.parametrize(
    ("steps", "options", "parameter"),
    [
        (["/only"], {}, "steps"),
        ([f"/{i}" for i in range(11)], {}, "steps"),
        (["/a", ""], {}, "steps"),
        (["/a", "*" * 11], {}, "steps"),
        (["/a", "/b"], {"breakdown": ""}, "breakdown"),
        (["/a", "/b"], {"top": 0}, "top"),
    ],
)
def test_funnel_input_errors(steps: list[str], options: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InputError) as caught:
        Funnel(WEEK, steps, **options)
    assert caught.value.parameter == parameter


@settings(max_examples=100)
@given(
    SESSIONS,
    st.lists(st.sampled_from(["/", "/a", "/b", "/c*", "*", "/checkout"]), min_size=2, max_size=5),
    st.sampled_from([None, "device", "country", "plan"]),
    st.randoms(use_true_random=False),
)
def test_funnel_properties(
    sessions: list[Session], steps: list[str], breakdown: str | None, rnd: random.Random
) -> None:
    f = funnel_of(steps, sessions, breakdown=breakdown, top=2)
    reach = [s.sessions for s in f.steps]
    assert all(a >= b for a, b in itertools.pairwise(reach))  # never increases
    assert reach[0] <= f.sessions == len(sessions)
    if breakdown and sessions:
        assert sum(g.sessions for g in f.groups) == f.sessions
        assert [sum(column) for column in zip(*(g.steps for g in f.groups), strict=True)] == reach
    shuffled = list(sessions)
    rnd.shuffle(shuffled)
    assert funnel_of(steps, shuffled, breakdown=breakdown, top=2) == f


@settings(max_examples=200)
@given(st.lists(st.text(max_size=250), max_size=12), st.none() | st.text(max_size=70))
def test_arbitrary_funnels_raise_only_input_errors(steps: list[str], breakdown: str | None) -> None:
    with contextlib.suppress(InputError):
        funnel_of(steps, HAND, breakdown=breakdown)


# --- paths ---------------------------------------------------------------------------------------


def paths_of(page: str | None, sessions: list[Session] = HAND, **options: Any) -> PathResult:
    analysis = PathAnalysis(WEEK, page, **options)
    analysis.add(sessions)
    return analysis.result(website_id="d", total=None)


def test_around_a_page() -> None:
    # "/" is viewed once each by s1 s2 s3 s5 s6 s7: s3 came from /blog, s6 from /about, the rest entered there;
    # s1 s3 s6 left from it, s2 and s5 went on to /products, s7 to /a
    p = paths_of("/")
    assert (p.sessions, p.visits, p.views) == (10, 6, 6)
    assert p.previous is not None
    assert p.next is not None
    assert entries(p.previous) == [
        ("(entered here)", 4, 66.7, None),
        ("/about", 1, 16.7, None),
        ("/blog", 1, 16.7, None),
    ]
    assert entries(p.next) == [("(exited here)", 3, 50.0, None), ("/products", 2, 33.3, None), ("/a", 1, 16.7, None)]
    assert (p.flows, p.paths) == (None, None)


def test_every_view_counts() -> None:
    # /products: s2 (after /, before /cart) and twice in s5 (after /, then after itself, last)
    p = paths_of("/products")
    assert (p.visits, p.views) == (2, 3)
    assert p.previous is not None
    assert p.next is not None
    assert [(e.v, e.n) for e in p.previous.top] == [("/", 2), ("/products", 1)]
    assert [(e.v, e.n) for e in p.next.top] == [("(exited here)", 1), ("/cart", 1), ("/products", 1)]


def test_around_a_pattern() -> None:
    p = paths_of("/blog*", top=2)  # s3 s4 s10 land on /blog
    assert p.previous is not None
    assert p.next is not None
    assert [(e.v, e.n) for e in p.previous.top] == [("(entered here)", 3)]
    assert [(e.v, e.n) for e in p.next.top] == [("(exited here)", 1), ("/", 1)]
    assert (p.next.distinct, p.next.other) == (3, 1)


def test_flows_and_whole_paths() -> None:
    p = paths_of(None, top=3)
    assert p.flows is not None
    assert p.paths is not None
    # s2 and s7 both go from / to /checkout; every other session has a flow of its own, s9 none at all
    assert [(e.v, e.n) for e in p.flows.top] == [("/ → /checkout", 2), ("(none)", 1), ("/ → /", 1)]
    assert (p.flows.distinct, p.flows.other) == (9, 6)
    assert p.paths.distinct == 10
    long = [*HAND, session("long", pages=[f"/p{i}" for i in range(8)]), session("again", pages=["/"])]
    every = paths_of(None, long, top=50).paths
    assert every is not None
    assert [(e.v, e.n) for e in every.top[:2]] == [("/", 2), ("(none)", 1)]
    assert "/p0 → /p1 → /p2 → (+3 pages) → /p6 → /p7" in {e.v for e in every.top}  # the middle elided


@pytest.mark.parametrize("page", ["", "   ", "/" + "x" * 200, "*" * 11])
def test_path_input_errors(page: str) -> None:
    with pytest.raises(InputError) as caught:
        PathAnalysis(WEEK, page)
    assert caught.value.parameter == "page"


@settings(max_examples=100)
@given(SESSIONS, st.sampled_from([None, "/", "/a", "/c*", "*"]), st.randoms(use_true_random=False))
def test_path_properties(sessions: list[Session], page: str | None, rnd: random.Random) -> None:
    p = paths_of(page, sessions, top=2)
    for b in (p.previous, p.next):
        if b is not None:
            assert sum(e.n for e in b.top) + b.other == p.views
    for b in (p.flows, p.paths):
        if b is not None:
            assert sum(e.n for e in b.top) + b.other == len(sessions)
    shuffled = list(sessions)
    rnd.shuffle(shuffled)
    assert paths_of(page, shuffled, top=2) == p


# --- comparison ----------------------------------------------------------------------------------


def summary_of(sessions: list[Session], window: Window = WEEK, top: int = 10, **options: Any) -> Summary:
    """A whole digest of `sessions`, fed in pages of 1,000 as a scan would (also used by test_render)."""
    digest = Digest(window, top=top, **options)
    for i in range(0, len(sessions), 1000):
        digest.add(sessions[i : i + 1000])
    return digest.summary(website_id="demo", total=len(sessions))


def test_compare_totals() -> None:
    # before: s1..s5: 5 sessions, visitors v1-v4 (v1 twice), 11 page views, 21 events, bounces s1 s4,
    # durations 0 30 60 120 300 (mean 102, median 60, p90 = 120 + 0.6 * 180 = 228)
    c = compare(summary_of(HAND), summary_of(HAND[:5], WEEK.previous()))
    assert c.previous.start == "2026-11-13"
    assert c.previous.end == "2026-11-19"
    assert c.complete
    assert c.notes == []
    assert [(t.name, t.now, t.before, t.delta, t.delta_pct) for t in c.totals] == [
        ("sessions", 10, 5, 5, 100.0),
        ("visitors", 7, 4, 3, 75.0),
        ("returning", 2, 1, 1, 100.0),
        ("returning_pct", 28.6, 25.0, 3.6, 14.4),
        ("page_views", 22, 11, 11, 100.0),
        ("events", 45, 21, 24, 114.3),
        ("bounces", 4, 2, 2, 100.0),
        ("bounce_pct", 40.0, 40.0, 0.0, 0.0),
        ("pages_per_session", 2.2, 2.2, 0.0, 0.0),
        ("duration_mean", 140.0, 102.0, 38.0, 37.3),
        ("duration_median", 60.0, 60.0, 0.0, 0.0),
        ("duration_p90", 360.0, 228.0, 132.0, 57.9),
    ]


def movers(c: Comparison, key: str) -> tuple[list[tuple[str, int, int, int, float]], list[tuple[str, float | None]]]:
    b = next(b for b in c.breakdowns + c.pages if b.key == key)
    return [(m.v, m.now, m.before, m.delta, m.share_delta) for m in b.movers], [
        (m.v, m.bounce_effect) for m in b.bounce_drivers
    ]


def test_compare_breakdowns() -> None:
    c = compare(summary_of(HAND), summary_of(HAND[:5], WEEK.previous()))
    # devices before: Desktop s1 s2 s5 (bounce s1), Mobile s3 s4 (bounce s4), no Tablet; all listed, so
    # Tablet's 0 is exact. Each group's bounces / all sessions is unchanged: no bounce driver.
    assert movers(c, "device") == (
        [("Desktop", 5, 3, 2, -10.0), ("Mobile", 4, 2, 2, 0.0), ("Tablet", 1, 0, 1, 10.0)],
        [],
    )
    # countries before: Turkey s1 s2 (bounce s1), Germany s3 s4 (bounce s4), United States s5
    # bounce effect = bounces now / 10 - bounces before / 5: Germany 1/10 - 1/5, France 1/10 - 0
    assert movers(c, "country") == (
        [("Turkey", 4, 2, 2, 0.0), ("(none)", 1, 0, 1, 10.0), ("France", 1, 0, 1, 10.0)],
        [("France", 10.0), ("Germany", -10.0)],
    )
    assert [b.key for b in c.breakdowns] == [
        "country",
        "device",
        "browser",
        "os",
        "utm_source",
        "utm_medium",
        "utm_campaign",
    ]
    assert [b.key for b in c.pages] == ["landing", "exit"]


def test_compare_skips_values_hidden_in_other() -> None:
    # top 3 now: Turkey 4, Germany 3, (none) 1 (France and United States in `other`);
    # before: Turkey 2, Germany 2, United States 1 (nothing in `other`, so (none) had 0)
    c = compare(summary_of(HAND, top=3), summary_of(HAND[:5], WEEK.previous(), top=3))
    assert movers(c, "country")[0] == [("Turkey", 4, 2, 2, 0.0), ("(none)", 1, 0, 1, 10.0), ("Germany", 3, 2, 1, -10.0)]


def test_compare_a_field_new_this_period() -> None:
    now = [session("a", fields={"plan": "pro"}), session("b", fields={"plan": "free"}), session("c")]
    before = [session("x"), session("y")]
    c = compare(summary_of(now), summary_of(before, WEEK.previous()))
    # every session before had no plan; equal changes in sessions rank by the change of share
    assert movers(c, "plan")[0] == [("(none)", 1, 2, -1, -66.7), ("free", 1, 0, 1, 33.3), ("pro", 1, 0, 1, 33.3)]


def test_compare_notes() -> None:
    partial = Digest(WEEK.previous(), segment=Segment(bounced=True))
    partial.add(HAND[:3])
    before = partial.summary(website_id="d", total=50, partial_reason="max_sessions=3 reached")
    c = compare(summary_of(HAND, Window("custom", date(2026, 11, 20), date(2026, 11, 25), "Europe/Istanbul")), before)
    assert not c.complete
    assert c.notes == [
        "before: Covers 3 of 50 sessions: max_sessions=3 reached.",
        "the two periods were read with different segments",
        "the periods differ in length (6 vs 7 days)",
    ]


@settings(max_examples=50)
@given(SESSIONS)
def test_comparing_a_period_with_itself_shows_no_change(sessions: list[Session]) -> None:
    s = summary_of(sessions, top=3)
    c = compare(s, s)
    assert all(t.delta in (0, None) for t in c.totals)
    assert all(b.movers == [] and b.bounce_drivers == [] for b in c.breakdowns + c.pages)


@settings(max_examples=200)
@given(st.none() | st.text(max_size=250), st.integers(-5, 60))
def test_arbitrary_path_questions_raise_only_input_errors(page: str | None, top: int) -> None:
    with contextlib.suppress(InputError):
        paths_of(page, HAND, top=top)
