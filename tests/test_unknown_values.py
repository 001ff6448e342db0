"""Unknown figures (None) render as `unknown` / `change n/a`, never as a crash (issue 10.2)."""

from __future__ import annotations

import json
from typing import Any

from hardal_mcp.analytics import compare
from hardal_mcp.models import Session
from hardal_mcp.render import render_comparison, render_summary

from .conftest import WINDOW, connect
from .test_analytics import WEEK, summary_of


def _sessions(prefix: str, n: int, duration: int | None) -> list[Session]:
    return [
        Session.model_validate(
            {"id": f"{prefix}{i}", "visitorId": f"v{i}", "device": "Desktop", "pageViews": 2, "duration": duration}
        )
        for i in range(n)
    ]


def _totals_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("totals: ")]


def test_comparison_of_two_empty_periods() -> None:
    # The Atlantis segment: nothing matches in either period, so no duration is known on either side.
    c = compare(summary_of([]), summary_of([], WEEK.previous()))
    assert [t.now for t in c.totals if t.name.startswith("duration_")] == [None, None, None]
    lines = _totals_lines(render_comparison(c))
    assert lines[0].startswith("totals: sessions 0 vs 0 (+0)")
    assert lines[2] == (
        "totals: duration mean unknown vs unknown (change n/a) · duration median unknown vs unknown (change n/a) · "
        "duration p90 unknown vs unknown (change n/a)"
    )


def test_comparison_when_only_the_current_period_is_empty() -> None:
    # timeframe=today just after midnight: no session yet today, yesterday had some.
    c = compare(summary_of([]), summary_of(_sessions("b", 4, 50), WEEK.previous()))
    text = render_comparison(c)
    assert "duration mean unknown vs 50s (change n/a)" in text
    assert "duration p90 unknown vs 50s (change n/a)" in text
    assert "sessions 0 vs 4 (−4, −100.0%)" in text


def test_comparison_when_only_the_previous_period_lacks_durations() -> None:
    c = compare(summary_of(_sessions("n", 3, 60)), summary_of(_sessions("b", 2, None), WEEK.previous()))
    assert "duration median 1m00s vs unknown (change n/a)" in render_comparison(c)


def test_estimated_summary_with_unknown_visitors_and_distinct_counts() -> None:
    # An estimate from a sample knows neither visitors nor how many distinct values a list has.
    s = summary_of(_sessions("s", 5, 30))
    s = s.model_copy(
        update={
            "totals": s.totals.model_copy(update={"visitors": None, "returning": None, "returning_pct": None}),
            "breakdowns": [b.model_copy(update={"distinct": None}) for b in s.breakdowns],
        }
    )
    text = render_summary(s)
    totals = next(line for line in text.splitlines() if line.startswith("totals: "))
    assert totals.startswith("totals: 5 sessions · visitors unknown · 10 page views")
    assert "device: Desktop 5 b0% [distinct values unknown]" in text


def _text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def test_summarize_sessions_previous_period_with_an_empty_segment_end_to_end() -> None:
    async with connect() as client:
        result = await client.call_tool(
            "summarize_sessions", {**WINDOW, "compare": "previous_period", "segment": {"country": "Atlantis"}}
        )
    text = _text(result)
    assert not result.is_error, text
    assert "duration mean unknown vs unknown (change n/a)" in text
    data = json.loads(json.dumps(result.structured_content))
    (mean,) = [t for t in data["comparison"]["totals"] if t["name"] == "duration_mean"]
    assert (mean["now"], mean["before"], mean["delta"], mean["delta_pct"]) == (None, None, None, None)
