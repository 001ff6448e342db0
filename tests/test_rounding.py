"""Rounding once, half up, from the exact ratio (issue 10.9): `numbers`, and render's text rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from hardal_mcp.analytics import Funnel, PathAnalysis
from hardal_mcp.analytics.schema import Sample
from hardal_mcp.models import Session
from hardal_mcp.numbers import (
    difference,
    pct,
    quotient,
    ratio,
    relative_pct,
    round_half_up,
    rounded,
    rounded_int,
    share_change,
)
from hardal_mcp.render import render_activity, render_funnel, render_paths, render_sessions, render_summary
from hardal_mcp.results import ActivityRow

from .test_analytics import WEEK, summary_of
from .test_render import activity, row, sessions_result


def test_halves_round_up_from_the_exact_ratio() -> None:
    assert round(100 * 5 / 16, 1) == 31.2  # what Python's round() does: half to even, on the binary float
    assert pct(5, 16) == 31.3
    assert pct(1, 8) == 12.5
    assert pct(1, 16, 1) == 6.3  # 6.25
    assert pct(1, 3) == 33.3
    assert pct(2, 3) == 66.7
    assert pct(0, 0) == 0.0
    assert str(ratio(34, 108, 0)) == "31"  # 31.48…: never via 31.5
    assert str(ratio(5, 16)) == "31.3"
    assert str(ratio(1, 4, 0)) == "25"
    assert str(ratio(0, 7)) == "0.0"
    assert str(ratio(22, 10, 2, scale=1)) == "2.20"  # pages per session keeps its trailing zero


def test_floats_round_as_they_print_and_negatives_mirror_positives() -> None:
    assert round(2.675, 2) == 2.67  # the binary 2.67499999…
    assert rounded(2.675, 2) == 2.68
    assert rounded(31.25, 1) == 31.3
    assert rounded(-31.25, 1) == -31.3
    assert rounded_int(2.5) == 3
    assert rounded_int(-2.5) == -3
    assert rounded_int(0.49) == 0
    assert str(round_half_up(-0.04, 1)) == "0.0"  # no negative zero
    assert str(round_half_up(Fraction(1, 8), 2)) == "0.13"


@given(st.integers(0, 10**6), st.integers(1, 10**6), st.integers(0, 3))
def test_ratio_matches_decimal_half_up(part: int, whole: int, places: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 60  # a/b with b ≤ 10⁶ that is not a tie lies far further than 10⁻⁵⁰ from one
        exact = Decimal(100 * part) / Decimal(whole)
        expected = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    assert ratio(part, whole, places) == expected
    assert pct(part, whole, places) == float(expected)


def _sessions(n: int, bounces: int, device: str = "Mobile") -> list[Session]:
    return [
        Session.model_validate({"id": f"{device}{i}", "device": device, "pageViews": 1 if i < bounces else 3})
        for i in range(n)
    ]


def test_text_bounce_rates_are_rounded_once_from_the_counts() -> None:
    # 34 of 108 is 31.48%: rounded to 31.5 first and then to a whole percent it became 32.
    s = summary_of(_sessions(108, 34))
    device = next(line for line in render_summary(s).splitlines() if line.startswith("device: "))
    assert device == "device: Mobile 108 b31% [1 value]"
    # 5 of 16 is exactly 31.25%: half up, 31.3 (round() gave 31.2).
    text = render_summary(summary_of(_sessions(16, 5)))
    assert " · bounce 31.3% (5)" in text


def test_totals_rates_come_from_the_counts() -> None:
    # 8 sessions of 1 visitor each but one visitor twice: returning 1 of 7 = 14.29%; 22 page views / 8 = 2.75.
    sessions = [
        Session.model_validate({"id": f"s{i}", "visitorId": f"v{min(i, 6)}", "pageViews": 2 if i < 2 else 3})
        for i in range(8)
    ]
    totals = next(line for line in render_summary(summary_of(sessions)).splitlines() if line.startswith("totals: "))
    assert totals == (
        "totals: 8 sessions · 7 visitors (1 returning, 14.3%) · 22 page views (2.75/session) · 0 events · "
        "bounce 0.0% (0)"
    )


def test_funnel_percentages_are_rounded_once_half_up() -> None:
    # 16 reach step 1, 5 reach step 2: 31.25% → 31.3; the 11 that left are 68.75% → 68.8.
    funnel = Funnel(WEEK, ["/", "/checkout"])
    funnel.add([Session.model_validate({"id": f"a{i}", "pages": ["/", "/checkout"] if i < 5 else ["/"]})
                for i in range(16)])  # fmt: skip
    lines = render_funnel(funnel.result(website_id="demo", total=16)).splitlines()
    assert lines[-1].startswith("step 2 /checkout: 5 (31.3% of step 1) · biggest drop-off: 11 of 16 left (68.8%)")


def test_path_shares_are_rounded_once_half_up() -> None:
    # 1 path of 16 sessions is 6.25% → 6.3 (round() gives 6.2); 15 of 16 is 93.75% → 94 (as a share ≥ 9.5%).
    sessions = [Session.model_validate({"id": f"p{i}", "pages": ["/a"] if i else ["/b"]}) for i in range(16)]
    paths = PathAnalysis(WEEK, top=5)
    paths.add(sessions)
    lines = render_paths(paths.result(website_id="demo", total=16)).splitlines()
    assert "path /b: 1 (6.3%)" in lines
    assert "path /a: 15 (93.8%)" in lines
    flows = next(line for line in lines if line.startswith("landing → exit"))
    assert "/a → /a 15 (94%) · /b → /b 1 (6.3%)" in flows


def test_durations_and_offsets_round_half_up() -> None:
    text, _ = render_sessions(sessions_result([row("s1", duration_s=2.5, page_views=1, events=0)]))
    assert text.splitlines()[-2].split()[:4] == ["s1", "-", "?", "3"]
    t0 = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    text, _ = render_activity(
        activity([ActivityRow(at=t0, type="a"), ActivityRow(at=t0 + timedelta(seconds=2.5), type="b")])
    )
    assert "+0:00:03 b - -" in text.splitlines()  # round(2.5) gave +0:00:02


def test_helpers_for_comparisons_round_once_from_exact_values() -> None:
    assert quotient(22, 8) == 2.75
    assert quotient(1, 8, 2) == 0.13  # 0.125: half up (round() gives 0.12)
    assert quotient(5, 0) == 0.0
    assert 31.3 - 31.25 != 0.05  # the float residue a difference of floats carries
    assert difference(31.3, 31.25, 2) == 0.05
    assert difference(40.0, 28.6, 1) == 11.4
    assert relative_pct(5, 40) == 12.5
    assert relative_pct(1, 16) == 6.3  # 6.25 (round() gives 6.2)
    assert relative_pct(-1, 16) == -6.3
    assert relative_pct(3, 0) is None
    assert share_change(5, 16, 0, 10) == 31.3  # 31.25 points
    assert share_change(1, 8, 1, 4) == -12.5
    assert share_change(3, 0, 0, 0) == 0.0


def test_an_estimated_funnel_shows_its_estimated_rates() -> None:
    # From a sample the counts are rounded estimates: the estimator's own rates are shown, not re-derived.
    funnel = Funnel(WEEK, ["/", "/checkout"])
    funnel.add([Session.model_validate({"id": f"a{i}", "pages": ["/", "/checkout"] if i < 5 else ["/"]})
                for i in range(16)])  # fmt: skip
    exact = funnel.result(website_id="demo", total=16)
    steps = [exact.steps[0], exact.steps[1].model_copy(update={"from_start_pct": 29.95, "from_prev_pct": 29.95})]
    sampled = exact.model_copy(
        update={
            "steps": steps,
            "coverage": exact.coverage.model_copy(update={"sample": Sample(read=16, of=160, days=7, moe=4.2)}),
        }
    )
    assert render_funnel(exact).splitlines()[-1].startswith("step 2 /checkout: 5 (31.3% of step 1)")
    assert render_funnel(sampled).splitlines()[-1].startswith("step 2 /checkout: 5 (30.0% of step 1)")


def test_structured_shares_and_rates_round_once_half_up() -> None:
    """5 of 16 is 31.25%: 31.3 in the JSON too, as in the text (binary round() gave 31.2)."""
    from datetime import date

    from hardal_mcp.analytics import Digest
    from hardal_mcp.params import Window

    window = Window("custom", date(2026, 11, 20), date(2026, 11, 20), "UTC")
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    sessions = [
        Session(id=f"s{i}", started_at=at, pages=["/"] if i < 5 else ["/", "/b"], country="Turkey" if i < 5 else "Peru")
        for i in range(16)
    ]
    digest = Digest(window)
    digest.add(sessions)
    summary = digest.summary(website_id="w", total=16)
    country = next(b for b in summary.breakdowns if b.key == "country")
    assert {e.v: e.pct for e in country.top} == {"Turkey": 31.3, "Peru": 68.8}
    assert summary.totals.bounce_pct == 31.3
