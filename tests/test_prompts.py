"""Prompts start the common jobs with one click, steering the model to the right tools; completion
offers timeframes and the configured website."""

from __future__ import annotations

from mcp.types import PromptReference

from .conftest import connect, make_settings


def prompt_text(result: object) -> str:
    return "\n".join(m.content.text for m in result.messages)  # type: ignore[attr-defined]


async def test_the_three_prompts_are_listed_with_their_arguments() -> None:
    async with connect() as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(prompts) == {"traffic_report", "funnel_review", "investigate_session"}
    required = {p.name: {a.name for a in p.arguments or [] if a.required} for p in prompts.values()}
    assert required == {"traffic_report": set(), "funnel_review": set(), "investigate_session": {"session_id"}}


async def test_each_prompt_steers_to_the_right_tools() -> None:
    async with connect() as client:
        report = prompt_text(await client.get_prompt("traffic_report", {"timeframe": "last30days"}))
        funnel = prompt_text(await client.get_prompt("funnel_review", {"steps": "/, /cart, /checkout"}))
        session = prompt_text(await client.get_prompt("investigate_session", {"session_id": "sess_1"}))
    assert 'summarize_sessions(timeframe="last30days", compare="previous_period")' in report
    assert "analyze_funnel(steps=['/', '/cart', '/checkout']" in funnel
    assert "analyze_paths" in funnel
    assert "get_session_activity" in funnel
    assert 'get_session_activity(session_id="sess_1")' in session


async def test_completion_offers_timeframes_and_the_configured_website() -> None:
    async with connect(make_settings(website_id="shop-main")) as client:
        ref = PromptReference(type="ref/prompt", name="traffic_report")
        frames = await client.complete(ref, {"name": "timeframe", "value": "last"})
        sites = await client.complete(ref, {"name": "website_id", "value": "sh"})
        nothing = await client.complete(ref, {"name": "website_id", "value": "zz"})
    assert frames.completion.values == ["last7days", "last30days"]
    assert sites.completion.values == ["shop-main"]
    assert nothing.completion.values == []
