"""Screenshots of the dashboard as a host shows it (`make screenshots`): the demo's last 7 days against the week
before, in light, dark and a narrow chat column, plus a funnel; written to docs/ (or the folder given).

    python -m tests.browser.screenshots [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from .harness import ROOT, chromium, demo_server, host

SUMMARY = ("summarize_sessions", {"timeframe": "last7days", "compare": "previous_period", "top": 5})
FUNNEL = (
    "analyze_funnel",
    {"timeframe": "last7days", "steps": ["/", "/products*", "/cart", "/checkout"], "breakdown": "device"},
)
SHOTS: list[tuple[str, tuple[str, dict[str, Any]], dict[str, Any]]] = [
    ("dashboard.png", SUMMARY, {"theme": "light", "width": 1000, "height": 1150}),
    ("dashboard-dark.png", SUMMARY, {"theme": "dark", "width": 1000, "height": 1150}),
    ("dashboard-narrow.png", SUMMARY, {"theme": "light", "width": 380, "height": 1400}),
    ("dashboard-funnel.png", FUNNEL, {"theme": "light", "width": 900, "height": 1000}),
]


async def shoot(url: str, out: Path) -> list[Path]:
    written = []
    async with chromium() as browser:
        for name, (tool, arguments), view in SHOTS:
            async with host(browser, url, width=view["width"], height=800, color_scheme=view["theme"]) as h:
                await h.open(tool, arguments, theme=view["theme"])
                assert h.requests == [], h.requests
                frame = h.page.locator("iframe#app")
                box = await frame.bounding_box()
                assert box is not None
                # The whole view painted: a viewport as tall as the frame the view asked for.
                await h.page.set_viewport_size({"width": view["width"], "height": int(box["height"]) + 1})
                await h.ready()
                path = out / name
                # The top of the view (headline figures, the series, the first lists): what a host shows first.
                clip = {
                    "x": box["x"],
                    "y": box["y"],
                    "width": box["width"],
                    "height": min(box["height"], view["height"]),
                }
                await h.page.screenshot(path=str(path), clip=clip, animations="disabled")  # type: ignore[arg-type]
                written.append(path)
    return written


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    with demo_server() as url:
        for path in asyncio.run(shoot(url, out)):
            print(f"screenshots: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
