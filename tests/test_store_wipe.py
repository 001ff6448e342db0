"""Issue 13, item 0, end to end: a question whose window is mostly stored days plus one day read now must
leave the stored days as they were — and, after a restart, answer exactly what the sandbox holds.

(The bug: the days served from the store were written back empty, and the next run answered 0 sessions for
them as "complete".)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx2
from mcp.client import Client

from hardal_mcp.config import Settings
from hardal_mcp.sandbox import SandboxConfig, create_app
from hardal_mcp.server import build_server

from .conftest import make_settings
from .test_server import text_of


class Counted:
    """The sandbox app, noting the days each request asks for."""

    def __init__(self, config: SandboxConfig) -> None:
        self.app = create_app(config)
        self.asked: list[tuple[date, date]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        if scope["type"] == "http" and "startDate" in query:
            self.asked.append((date.fromisoformat(query["startDate"][0]), date.fromisoformat(query["endDate"][0])))
        await self.app(scope, receive, send)

    def requests_for(self, first: date, last: date) -> int:
        """Requests for any day from `first` to `last` (not the key check, which asks about today)."""
        return sum(start <= last and end >= first for start, end in self.asked)


@asynccontextmanager
async def served(settings: Settings, config: SandboxConfig) -> AsyncIterator[tuple[Client, Counted]]:
    """Like conftest.connect (one server process's life: a new one is a restart), with a request count."""
    upstream = Counted(config)
    server = build_server(settings, transport=httpx2.ASGITransport(app=upstream))
    async with Client(server) as client:
        yield client, upstream


async def summary(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("summarize_sessions", arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def test_a_window_of_stored_days_and_one_new_day_keeps_the_stored_days(tmp_path: Path) -> None:
    config = SandboxConfig(sessions_per_day=800, now=datetime.now(UTC))  # one clock for every server below
    stored = make_settings(store=str(tmp_path / "store.sqlite3"))
    today = datetime.now(ZoneInfo(stored.timezone)).date()
    first = today - timedelta(days=30)  # the one closed day before last30days
    last = today - timedelta(days=3)  # the newest day closed enough for the store
    window = {"timeframe": "custom", "start_date": first.isoformat(), "end_date": last.isoformat()}
    async with served(make_settings(), config) as (client, _):
        truth = await summary(client, **window)
    assert truth["coverage"]["complete"] and truth["totals"]["sessions"] > 27 * 500

    async with served(stored, config) as (client, _):
        month = await summary(client, timeframe="last30days")
        assert month["coverage"]["complete"] and month["coverage"]["sample"] is None
        first = await summary(client, **window)
    assert first["totals"] == truth["totals"]

    async with served(stored, config) as (client, upstream):  # the restart
        again = await summary(client, **window)
    assert upstream.requests_for(first, last) == 0, "every day of the window comes from the store"
    assert again["coverage"]["complete"]
    assert again["totals"] == truth["totals"]
    assert again["breakdowns"] == truth["breakdowns"]
