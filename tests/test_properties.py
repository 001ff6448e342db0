"""Property tests through a real MCP client: whatever a model sends, every tool answers — with a result or
with an error that names what to fix — and never with an unexpected failure."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import WINDOW, connect

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
SEGMENT_KEYS = st.sampled_from(
    ["country", "device", "browser", "os", "fields", "visited", "not_visited", "landing_page", "exit_page",
     "min_duration", "max_duration", "min_pageviews", "bounced", "returning", "nonsense"]
)  # fmt: skip
SEGMENTS = st.dictionaries(SEGMENT_KEYS, JSON, max_size=3)
PATTERNS = st.lists(st.text(max_size=40) | st.sampled_from(["/", "/cart", "/products*", "*", "**", ""]), max_size=12)

CALLS = st.one_of(
    st.builds(lambda s: ("summarize_sessions", {"segment": s}), SEGMENTS | JSON),
    st.builds(lambda s, n: ("list_sessions", {"segment": s, "limit": n}), SEGMENTS, st.integers(-5, 300)),
    st.builds(lambda steps, b: ("analyze_funnel", {"steps": steps, "breakdown": b}), PATTERNS | JSON, JSON),
    st.builds(lambda page: ("analyze_paths", {"page": page}), st.text(max_size=250) | JSON),
    st.builds(
        lambda sid, order: ("get_session_activity", {"session_id": sid, "order": order}),
        st.text(max_size=140) | JSON,
        st.sampled_from(["asc", "desc", "sideways"]),
    ),
    st.builds(
        lambda tf, start, end, tz: ("summarize_sessions", {"timeframe": tf, "start_date": start, "end_date": end,
                                                           "timezone": tz}),
        JSON | st.sampled_from(["today", "custom", "last7days"]),
        JSON | st.sampled_from(["2026-11-01", "2026-02-30", "yesterday"]),
        JSON | st.sampled_from(["2026-11-03", "1999-01-01"]),
        JSON | st.sampled_from(["UTC", "Europe/Istanbul", "Mars/Base"]),
    ),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(CALLS, min_size=1, max_size=4))
async def test_any_arguments_get_an_answer_or_a_clear_error(calls: list[tuple[str, dict[str, Any]]]) -> None:
    async with connect() as client:
        for tool, arguments in calls:
            window = {} if {"timeframe", "start_date", "end_date"} & arguments.keys() else WINDOW
            result = await client.call_tool(tool, {**window, **arguments})
            text = "\n".join(b.text for b in result.content if b.type == "text")
            if result.is_error:
                assert text.strip() != f"Error executing tool {tool}", "an unexpected exception escaped"
                assert len(text) < 2000
            else:
                assert result.structured_content is not None
