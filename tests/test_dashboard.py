"""The MCP Apps dashboard (`ui://hardal/dashboard`): the resource and the tools' `_meta` as served, answers
unchanged for hosts without the extension, and the view itself in headless Chromium, played by a test host
(tests/browser/harness.py) against a running `hardal-mcp --demo` over streamable HTTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest
import pytest_asyncio
from mcp.client import Client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult

from hardal_mcp.apps import DASHBOARD_URI, MAX_HTML_BYTES, UI_TOOLS, dashboard_html
from hardal_mcp.server import build_server

from .conftest import WINDOW, make_settings, sandbox_transport

if not os.environ.get("CI"):
    pytest.importorskip("playwright", reason="the browser tests need the test extra (playwright)")

from .browser.harness import Host, UIExtension, chromium, chromium_available, demo_server, host

in_module_loop = pytest.mark.asyncio(loop_scope="module")
needs_chromium = pytest.mark.skipif(
    not chromium_available() and not os.environ.get("CI"), reason="needs Debian's chromium (apt-get install chromium)"
)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


# --------------------------------------------------------------------------------------------- as served


def test_the_dashboard_is_one_small_self_contained_page() -> None:
    html = dashboard_html()
    assert len(html.encode("utf-8")) <= MAX_HTML_BYTES
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp is not None
    policy = dict(part.strip().split(" ", 1) for part in csp.group(1).split(";"))
    assert policy["default-src"] == "'none'"
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    for source, block in (("script-src", script), ("style-src", style)):
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert policy[source] == f"'sha256-{digest}'"  # that one block, nothing else, no origin
    assert "connect-src" not in policy  # default-src 'none' covers it: no fetch, XHR or WebSocket anywhere
    assert not re.search(r"\b(?:src|href)\s*=", html), "nothing is loaded from anywhere"
    assert not re.search(r"https?://", html)
    # Values reach the page as text only; the script neither parses HTML nor evaluates strings nor fetches.
    for banned in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
        "fetch(",
        "XMLHttpRequest",
        "WebSocket",
        "import(",
        'setAttribute("style',
    ):
        assert banned not in script, banned


@in_module_loop
async def test_tools_and_resource_carry_the_app_metadata() -> None:
    server = build_server(make_settings(), transport=sandbox_transport())
    async with Client(server) as client:  # a host without the extension sees the same listing
        tools = (await client.list_tools()).tools
        resources = (await client.list_resources()).resources
        read = await client.read_resource(DASHBOARD_URI)
    assert {t.name: t.meta for t in tools if t.meta} == {
        name: {"ui": {"resourceUri": DASHBOARD_URI}} for name in UI_TOOLS
    }
    (resource,) = [r for r in resources if r.uri == DASHBOARD_URI]
    assert resource.mime_type == APP_MIME_TYPE
    assert resource.meta == {"ui": {"csp": {}, "prefersBorder": True}}  # empty CSP: no origin at all
    (content,) = read.contents
    assert content.mime_type == APP_MIME_TYPE
    assert content.text == dashboard_html()  # type: ignore[union-attr]


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("summarize_sessions", {**WINDOW, "compare": "previous_period"}),
    ("analyze_funnel", {**WINDOW, "steps": ["/", "/products*", "/cart"], "breakdown": "device"}),
    ("analyze_paths", {**WINDOW, "page": "/cart"}),
    ("list_sessions", {**WINDOW, "limit": 5}),
]


@in_module_loop
async def test_answers_are_the_same_whether_the_host_negotiated_apps_or_not() -> None:
    server = build_server(make_settings(), transport=sandbox_transport())
    answers: list[list[Any]] = []
    for extensions in ([], [UIExtension()]):
        async with Client(server, extensions=extensions) as client:
            got = []
            for tool, arguments in CALLS:
                result = await client.call_tool(tool, arguments)
                assert not result.is_error, text_of(result)
                got.append((text_of(result), result.structured_content, [b.type for b in result.content]))
            answers.append(got)
    assert answers[0] == answers[1]


# --------------------------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with demo_server() as url:
        yield url


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


@contextlib.asynccontextmanager
async def checked(browser: Any, server: Any, **options: Any) -> AsyncIterator[Host]:
    """A host page for one test (opened in the test's own task: the MCP client's task group must be left
    where it was entered), and the checks every test ends with: the view spoke the ext-apps protocol, the
    browser fetched nothing, and nothing was refused by the page's CSP or thrown."""
    async with host(browser, server, **options) as h:
        yield h
        await h.check_protocol()
        assert h.requests == [], "the page fetched something"
        problems = [line for line in h.console if line.startswith(("error", "pageerror")) or "Content Security" in line]
        assert problems == []


async def texts(h: Host, selector: str) -> list[str]:
    return [t.strip() for t in await h.frame.locator(selector).all_text_contents()]


def today_in(zone: str) -> date:
    return datetime.now(ZoneInfo(zone)).date()


@needs_chromium
@in_module_loop
async def test_summary_figures_equal_the_structured_content(browser: Any, server_url: str) -> None:
    async with checked(browser, server_url) as app:
        result = await app.open(
            "summarize_sessions", {"timeframe": "last7days", "compare": "previous_period", "top": 5}
        )
        s = result.structured_content
        assert s is not None
        text = text_of(result)
        t = s["totals"]

        async def figure(name: str) -> str:
            return (await app.frame.locator(f'[data-figure="{name}"] .value').text_content() or "").strip()

        # Headline figures: the structured counts, written as the text answer writes them.
        assert await figure("sessions") == f"{t['sessions']:,}"
        assert f"{t['sessions']:,} sessions" in text
        assert await figure("visitors") == f"{t['visitors']:,}"
        assert await figure("page_views") == f"{t['page_views']:,}"
        assert await figure("events") == f"{t['events']:,}"
        bounce = await figure("bounce_pct")
        assert f"bounce {bounce} ({t['bounces']:,})" in text
        pages = await figure("pages_per_session")
        assert f"({pages}/session)" in text
        returning = await figure("returning")
        assert f"({returning.replace(' (', ' returning, ')}" in text
        median = await figure("duration_median")
        assert f"duration: median {median} ·" in text
        assert float(bounce.rstrip("%")) == pytest.approx(t["bounce_pct"], abs=0.05)

        # The window and the coverage, as the text's head says them.
        window = (await app.frame.locator("#window").text_content() or "").strip()
        assert text.splitlines()[0].endswith(window)
        assert (await app.frame.locator("#coverage").text_content() or "").strip() in text
        today = today_in(s["window"]["timezone"])
        assert await app.frame.locator("#today-note").count() == (date.fromisoformat(s["window"]["end"]) >= today)

        # The series: one bar per day with its count, today's marked; and the same figures as a table.
        cols = app.frame.locator("#series .col")
        assert [int(n) for n in await cols.evaluate_all("els => els.map(e => e.dataset.n)")] == s["series"]["counts"]
        marked = await app.frame.locator("#series .col.today").evaluate_all("els => els.map(e => e.dataset.label)")
        assert marked == ([f"{today:%m-%d}"] if date.fromisoformat(s["window"]["end"]) >= today else [])
        rows = await texts(app, "#series tbody td:nth-child(2)")
        assert rows == [f"{n:,}" for n in s["series"]["counts"]]

        # Every top list: its values in order, each with its count and share, then `other`.
        for b in s["breakdowns"] + s["pages"]:
            card = app.frame.locator(f'[data-list="{b["key"]}"]')
            labels = [t.strip() for t in await card.locator(".row:not(.other) .label").all_text_contents()]
            assert labels == [e["v"] for e in b["top"]]
            figs = [t.strip() for t in await card.locator(".row:not(.other) .figs").all_text_contents()]
            for e, shown in zip(b["top"], figs, strict=True):
                assert shown.startswith(f"{e['n']:,} · {e['pct']:.1f}%"), (shown, e)
            if b["other"]:
                assert (await card.locator(".row.other .figs").text_content() or "").strip() == f"{b['other']:,}"

        # The comparison: each total's change as the comparison text writes it, noise said where it is.
        for c in s["comparison"]["totals"]:
            delta = app.frame.locator(f'[data-change="{c["name"]}"]')
            if await delta.count():
                shown = (await delta.text_content() or "").strip()
                assert ("within noise" in shown) == c["noise"]
                change = shown.split(" vs ")[0]
                assert f"({change})" in text or f"({change}" in text, (c, shown)


@needs_chromium
@in_module_loop
async def test_clicking_a_country_asks_the_host_for_that_segment_and_the_view_follows(
    browser: Any, server_url: str
) -> None:
    async with checked(browser, server_url) as app:
        first = await app.open("summarize_sessions", {"timeframe": "last7days"})
        assert first.structured_content is not None
        countries = next(b for b in first.structured_content["breakdowns"] if b["key"] == "country")
        germany = next(e for e in countries["top"] if e["v"] == "Germany")

        await app.frame.locator('button.row[data-key="country"][data-value="Germany"]').click()
        await app.frame.wait_for_selector("#segment-note")
        await app.ready()

        assert app.calls == [("summarize_sessions", {"timeframe": "last7days", "segment": {"country": "Germany"}})]
        (answer,) = app.results
        s = answer.structured_content
        assert s is not None and s["segment"] is not None
        sessions = (await app.frame.locator('[data-figure="sessions"] .value').text_content() or "").strip()
        assert sessions == f"{s['totals']['sessions']:,}" == f"{germany['n']:,}"
        only = await texts(app, '[data-list="country"] .row:not(.other) .label')
        assert only == ["Germany"]
        assert "country = Germany" in (await app.frame.locator("#chips").text_content() or "")

        # Back shows the answer before, without asking again; the chip's × asks without the segment.
        await app.frame.locator("#back").click()
        await app.ready()
        again = (await app.frame.locator('[data-figure="sessions"] .value').text_content() or "").strip()
        assert again == f"{first.structured_content['totals']['sessions']:,}"
        assert len(app.calls) == 1

        await app.frame.locator("#timeframe").select_option("yesterday")
        await app.ready()
        assert app.calls[-1] == ("summarize_sessions", {"timeframe": "yesterday"})
        window = app.results[-1].structured_content
        assert window is not None
        assert (await app.frame.locator("#window").text_content() or "").startswith(
            f"yesterday: {window['window']['start']}"
        )


@needs_chromium
@in_module_loop
async def test_the_keyboard_reaches_every_control_and_charts_have_text_equivalents(
    browser: Any, server_url: str
) -> None:
    async with checked(browser, server_url) as app:
        result = await app.open("summarize_sessions", {"timeframe": "last7days"})
        assert result.structured_content is not None
        chart = app.frame.locator("#series-chart")
        assert await chart.get_attribute("role") == "img"
        assert "Sessions per day" in (await chart.get_attribute("aria-label") or "")
        assert await app.frame.locator("#series table tbody tr").count() == len(
            result.structured_content["series"]["counts"]
        )
        # Every bar that asks something is a focusable button with a name that says what it does.
        buttons = app.frame.locator("button.row")
        names = await buttons.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
        assert names and all(n and n.startswith("Filter by ") for n in names)

        # Tab from the top: the period select, the comparison box, the chart's table, then the first bar.
        await app.frame.locator("body").focus()
        focused: list[str] = []
        for _ in range(4):
            await app.page.keyboard.press("Tab")
            focused.append(
                await app.frame.evaluate(
                    "() => { const e = document.activeElement; return e.id || e.dataset.value || e.tagName; }"
                )
            )
        first_country = next(b for b in result.structured_content["breakdowns"] if b["key"] == "country")["top"][0]["v"]
        assert focused == ["timeframe", "compare", "SUMMARY", first_country]
        await app.frame.locator(f'button.row[data-key="country"][data-value="{first_country}"]').focus()
        await app.page.keyboard.press("Enter")
        await app.frame.wait_for_selector("#segment-note")
        await app.ready()
        assert app.calls[-1][1]["segment"] == {"country": first_country}


@needs_chromium
@in_module_loop
async def test_light_and_dark_themes_and_host_variables_apply(browser: Any, server_url: str) -> None:
    async with checked(browser, server_url) as app:
        await app.open("summarize_sessions", {"timeframe": "last7days"}, theme="light", variables={})

        async def look() -> tuple[str | None, str, str]:
            return await app.frame.evaluate(
                """() => [document.documentElement.dataset.theme || null,
                          getComputedStyle(document.body).backgroundColor,
                          getComputedStyle(document.body).color]"""
            )

        def luminance(css: str) -> float:
            r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
            return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

        theme, background, color = await look()
        assert theme == "light"
        assert luminance(background) > 0.9 and luminance(color) < 0.3

        await app.set_context({"theme": "dark"})
        await app.frame.wait_for_function("() => document.documentElement.dataset.theme === 'dark'")
        theme, background, color = await look()
        assert luminance(background) < 0.15 and luminance(color) > 0.8

        # The host's own design tokens win over the defaults, its font among them.
        tokens = {"--color-background-primary": "rgb(1, 2, 3)", "--font-sans": '"Host Sans", serif'}
        await app.set_context({"styles": {"variables": tokens}})
        await app.frame.wait_for_function("() => getComputedStyle(document.body).backgroundColor === 'rgb(1, 2, 3)'")
        assert "Host Sans" in await app.frame.evaluate("() => getComputedStyle(document.body).fontFamily")


@needs_chromium
@in_module_loop
async def test_a_narrow_column_reflows_without_scrolling_sideways(browser: Any, server_url: str) -> None:
    async with host(browser, server_url, width=360) as h:
        await h.open("summarize_sessions", {"timeframe": "last7days", "compare": "previous_period"})
        overflow = await h.frame.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        # The host was told the height to give the frame.
        sizes = [
            e["message"]["params"]["height"]
            for e in await h.log()
            if e["message"].get("method") == "ui/notifications/size-changed"
        ]
        assert sizes and sizes[-1] > 400
        assert h.requests == []
        await h.check_protocol()


@needs_chromium
@in_module_loop
async def test_funnel_steps_equal_the_structured_content_and_a_step_opens_its_paths(
    browser: Any, server_url: str
) -> None:
    async with checked(browser, server_url) as app:
        steps = ["/", "/products*", "/cart", "/checkout"]
        result = await app.open("analyze_funnel", {"timeframe": "last7days", "steps": steps, "breakdown": "device"})
        f = result.structured_content
        assert f is not None
        text = text_of(result)
        rows = app.frame.locator("#steps .row")
        assert await rows.count() == len(steps)
        for i, step in enumerate(f["steps"], 1):
            row = rows.nth(i - 1)
            label = (await row.locator(".label").first.text_content() or "").strip()
            figs = (await row.locator(".figs").text_content() or "").strip()
            assert label == f"step {i} {step['page']}"
            assert figs.startswith(f"{step['sessions']:,} · ")
            line = next(x for x in text.splitlines() if x.startswith(f"step {i} "))
            if i >= 2:
                assert figs.split(" · ")[1].split(" of ")[0] in line  # the % of step 1, as the text says it
            assert ("worst" in (await row.get_attribute("class") or "")) == (i == f["worst_step"])
        groups = await texts(app, "#groups tbody th")
        assert groups == [g["v"] for g in f["groups"]]

        await rows.nth(2).click()  # /cart
        await app.frame.wait_for_selector("#paths-line")
        await app.ready()
        assert app.calls == [("analyze_paths", {"timeframe": "last7days", "page": "/cart"})]
        p = app.results[-1].structured_content
        assert p is not None
        for key in ("previous", "next"):
            labels = await texts(app, f'[data-list="{key}"] .row:not(.other) .label')
            assert labels == [e["v"] for e in p[key]["top"]]
        assert (await app.frame.locator("#paths-line").text_content() or "").strip() in text_of(app.results[-1])


@needs_chromium
@in_module_loop
async def test_paths_without_a_page_show_flows_and_whole_paths(browser: Any, server_url: str) -> None:
    async with checked(browser, server_url) as app:
        result = await app.open("analyze_paths", {"timeframe": "last7days", "top": 5})
        p = result.structured_content
        assert p is not None
        flows = await texts(app, f'[data-list="{p["flows"]["key"]}"] .row:not(.other) .label')
        assert flows == [e["v"] for e in p["flows"]["top"]]
        cells = await texts(app, "#whole-paths tbody th")
        assert cells[: len(p["paths"]["top"])] == [e["v"] for e in p["paths"]["top"]]
        text = text_of(result)
        shares = await texts(app, "#whole-paths tbody td:nth-child(3)")
        for e, share in zip(p["paths"]["top"], shares, strict=False):
            assert f": {e['n']:,} ({share})" in text


# ------------------------------------------------------------------------------------- hostile values

XSS = '<img src=x onerror="parent.pwned=1">'
SCRIPT = "<script>parent.pwned=2</script>"
SVG = '"><svg onload="parent.pwned=3">'


def hostile_hardal(request: httpx2.Request) -> httpx2.Response:
    day = WINDOW["start_date"]
    sessions = [
        {
            "id": f"sess_{i}",
            "visitorId": f"visitor_{i}",
            "startedAt": f"{day}T1{i % 10}:00:00+03:00",
            "duration": "30s",
            "pageViews": 2,
            "events": 2,
            "pages": ["/", f"/search?q={SVG}" if i % 2 else "/cart"],
            "browser": SCRIPT,
            "os": "Linux",
            "device": "Desktop",
            "country": XSS if i % 3 else "Germany",
            "fields": {"utm_source": SVG},
        }
        for i in range(12)
    ]
    return httpx2.Response(200, json={"sessions": sessions, "pagination": {"total": len(sessions), "hasMore": False}})


@needs_chromium
@in_module_loop
async def test_hostile_labels_render_as_inert_text(browser: Any) -> None:
    server = build_server(make_settings(), transport=httpx2.MockTransport(hostile_hardal))
    async with host(browser, server) as h:
        result = await h.open("summarize_sessions", WINDOW)
        s = result.structured_content
        assert s is not None
        country = next(b for b in s["breakdowns"] if b["key"] == "country")
        hostile = next(e["v"] for e in country["top"] if "onerror" in e["v"])
        labels = await texts(h, '[data-list="country"] .label')
        assert hostile in labels  # shown, as the characters it is
        assert any("<script>" in v for v in await texts(h, '[data-list="browser"] .label'))
        # ...and nothing of it became markup: no image, no foreign script or svg, no handler ran.
        counts = await h.frame.evaluate(
            "() => ['img', 'svg', 'script'].map(t => document.getElementsByTagName(t).length)"
        )
        assert counts == [0, 0, 1]  # the dashboard's own script only
        assert await h.frame.evaluate("() => typeof window.pwned") == "undefined"
        assert await h.page.evaluate("() => typeof window.pwned") == "undefined"
        handlers = await h.frame.evaluate(
            "() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
            ".filter(n => n.startsWith('on'))"
        )
        assert handlers == []

        # A hostile value is still a value: clicking it asks for exactly that segment.
        await h.frame.locator('button.row[data-key="country"]').filter(has_text="onerror").click()
        await h.frame.wait_for_selector("#segment-note")
        await h.ready()
        assert h.calls[-1][1]["segment"] == {"country": hostile}
        assert await h.frame.evaluate("() => typeof window.pwned") == "undefined"
        assert h.requests == []
        await h.check_protocol()


def test_the_schema_excerpt_is_the_npm_packages() -> None:
    """The vendored schema excerpt names its source; its definitions are the ones the harness validates with."""
    from .browser.harness import SCHEMA, VIEW_MESSAGES

    assert set(VIEW_MESSAGES.values()) <= set(SCHEMA)
    raw = json.loads((__import__("pathlib").Path(__file__).parent / "browser" / "ext-apps-schema.json").read_text())
    assert "@modelcontextprotocol/ext-apps@2.0.4" in raw["description"]
    assert EXTENSION_ID == "io.modelcontextprotocol/ui"


@needs_chromium
@in_module_loop
async def test_today_is_hourly_and_an_estimate_shows_its_margins(browser: Any, server_url: str) -> None:
    async with checked(browser, server_url) as app:
        result = await app.open("summarize_sessions", {"timeframe": "today"})
        s = result.structured_content
        assert s is not None and s["series"]["unit"] == "hour"
        cols = app.frame.locator("#series .col")
        assert [int(n) for n in await cols.evaluate_all("els => els.map(e => e.dataset.n)")] == s["series"]["counts"]
        assert await app.frame.locator("#series .col.today").count() == len(s["series"]["counts"])  # all of today
        assert "Sessions per hour" in (await app.frame.locator("#series-chart").get_attribute("aria-label") or "")

    # A sampled answer (the shape the planner gives a window too large for the rate budget): the coverage says
    # ESTIMATED with its margin, estimated days are marked with theirs, and shares carry their ±.
    async with checked(browser, server_url) as app:
        real = await app.client.call_tool("summarize_sessions", {**WINDOW})
        s = dict(real.structured_content or {})
        days = len(s["series"]["counts"])
        s["coverage"] = {**s["coverage"], "sample": {"read": 1000, "of": 4000, "days": days, "moe": 2.5}}
        s["series"] = {**s["series"], "estimated": True, "moe": [12.0] * (days - 1) + [None]}
        country = next(b for b in s["breakdowns"] if b["key"] == "country")
        country["top"] = [{**e, "moe": 1.5, "bounce_moe": 3.0} for e in country["top"]]
        sampled = real.model_copy(update={"structured_content": s})
        await app.open("summarize_sessions", {**WINDOW}, result=sampled)
        coverage = (await app.frame.locator("#coverage").text_content() or "").strip()
        assert coverage.startswith("ESTIMATED from a sample: 1,000 of 4,000 sessions read")
        assert "±2.5 pts" in coverage
        assert await app.frame.locator("#series .col.est").count() == days - 1
        assert await app.frame.locator("#series .col.est .moe").count() == days - 1
        margins = await texts(app, "#series tbody td:nth-child(3)")
        assert margins == ["±12"] * (days - 1) + [""]
        figs = await texts(app, '[data-list="country"] .row:not(.other) .figs')
        assert figs and all("% ±1.5 · b" in f and "±3.0%" in f for f in figs)
