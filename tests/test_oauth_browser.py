"""The consent page in a real headless Chromium (Debian's, through Playwright): a person types their key and
clicks Allow, and the browser — under the page's own Content-Security-Policy, which must let the form's
redirect through — lands on the app's redirect URI with a code; a wrong key keeps them on the page, told why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("playwright", reason="the browser tests need the test extra (playwright)")

from hardal_mcp.sandbox import DEMO_API_KEY

from .browser.consent import sign_in
from .browser.harness import chromium, chromium_available
from .test_oauth import REDIRECT, Served, serve

needs_chromium = pytest.mark.skipif(
    not chromium_available() and not os.environ.get("CI"), reason="needs Debian's chromium (apt-get install chromium)"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path / "state") as served:
        yield served


@needs_chromium
async def test_a_person_signs_in_through_the_consent_page_in_chromium(server: Served) -> None:
    async with chromium() as browser:
        landed = await sign_in(browser, server, key=DEMO_API_KEY)
        refused = await sign_in(browser, server, key="a-wrong-key", refused=True)
    assert landed.startswith(REDIRECT), landed
    query = parse_qs(urlsplit(landed).query)
    assert query["code"] and query["iss"] == [server.url]
    assert "Hardal rejected this API key" in refused
