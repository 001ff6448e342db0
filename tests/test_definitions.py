"""What a model needs to read the figures right: definitions in the digest, unfinished days, DST hours."""

from __future__ import annotations

from .conftest import connect
from .test_server import text_of


async def summary_text(**arguments: object) -> str:
    async with connect() as client:
        result = await client.call_tool("summarize_sessions", dict(arguments))
    assert not result.is_error, text_of(result)
    return text_of(result)


async def test_the_digest_defines_bounce_returning_and_what_lists_count() -> None:
    text = await summary_text(timeframe="yesterday")
    assert "bounce = ≤1 page view" in text
    assert "returning = visitor with ≥2 sessions in the whole window (even under a segment)" in text
    assert "most viewed counts page views" in text


async def test_a_window_with_today_says_today_is_not_over() -> None:
    assert "is not over" in await summary_text(timeframe="today")
    assert "is not over" in await summary_text(timeframe="last7days")
    assert "is not over" not in await summary_text(timeframe="yesterday")


async def test_hours_of_a_dst_day_show_their_offset() -> None:
    text = await summary_text(start_date="2025-10-26", end_date="2025-10-26", timezone="Europe/Berlin")
    series = next(line for line in text.splitlines() if line.startswith("per hour"))
    assert "02h+0200" in series and "02h+0100" in series  # the hour that happens twice, told apart
    plain = await summary_text(start_date="2025-10-20", end_date="2025-10-20", timezone="Europe/Berlin")
    assert "+0200" not in next(line for line in plain.splitlines() if line.startswith("per hour"))
