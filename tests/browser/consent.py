"""The `--auth oauth` consent page in Debian's Chromium: a person's sign-in from the app's redirect to the
code, typed and clicked as a person does (used by tests/test_oauth_browser.py), and its screenshot
(`make screenshots`: docs/consent.png).

    python -m tests.browser.consent [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx2
from playwright.async_api import Browser

from hardal_mcp.sandbox import DEMO_API_KEY

from ..test_oauth import REDIRECT, Served, authorize_url, pkce, serve
from .harness import ROOT, chromium


async def sign_in(
    browser: Browser, served: Served, *, key: str, refused: bool = False, screenshot: Path | None = None
) -> str:
    """Register a client named like a real connector, open its authorization URL, type `key` and the website,
    click Allow: the URL the browser was sent to (the app's redirect URI), or with `refused` the page's text."""
    async with httpx2.AsyncClient(base_url=served.url, timeout=30) as http:
        registered = await http.post(
            "/register",
            json={"redirect_uris": [REDIRECT], "client_name": "Claude", "token_endpoint_auth_method": "none"},
        )
        client_id = registered.json()["client_id"]
    _, challenge = pkce()
    context = await browser.new_context(viewport={"width": 640, "height": 720}, color_scheme="light")
    try:
        page = await context.new_page()
        await page.goto(authorize_url(served.url, client_id, challenge))
        await page.fill("#api_key", key)
        await page.fill("#website_id", "demo")
        if screenshot is not None:
            await page.screenshot(path=str(screenshot), full_page=True, animations="disabled")
        if refused:  # the page answers again, saying why
            async with page.expect_navigation():
                await page.click("button[value=allow]")
            return await page.inner_text("main")
        # The app's redirect URI has nobody listening (the request fails): what counts is where it was sent.
        async with page.expect_request(lambda request: request.url.startswith(REDIRECT)) as sent:
            await page.click("button[value=allow]")
        return (await sent.value).url
    finally:
        await context.close()


async def shoot(out: Path) -> Path:
    path = out / "consent.png"
    with tempfile.TemporaryDirectory() as state, serve(Path(state)) as served:
        async with chromium() as browser:
            await sign_in(browser, served, key=DEMO_API_KEY, screenshot=path)
    return path


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    path = asyncio.run(shoot(out))
    print(f"screenshots: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
