"""What each tool does, without the MCP layer: validate, fetch through the client, aggregate, render.
Methods return `(structured result, text)`; they raise only `hardal_mcp.errors` exceptions."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.abc
from pydantic import SecretStr

from .analytics import Digest, Summary
from .client import HardalClient
from .config import Settings, env_name
from .errors import AuthError, InputError, NetworkError, UpstreamError
from .models import ActivityEvent, Session, SessionsPage
from .params import Window, check_id, check_timezone, resolve_window
from .render import render_activity, render_sessions, render_summary
from .results import ActivityResult, ActivityRow, PageInfo, SessionRow, SessionsResult, WindowInfo
from .sanitize import clean

log = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str], Awaitable[None]]
T = TypeVar("T")

MAX_SESSIONS_CAP = 200_000
SCAN_CONCURRENCY = 4  # pages in flight during a scan; the rate limiter still bounds requests per minute


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a question points: which site, which period, which signal."""

    website_id: str
    window: Window
    target_signal_id: str | None = None
    is_hybrid: bool = False


@dataclass(slots=True)
class ScanStats:
    total: int | None = None
    pages: int = 0
    partial_reason: str | None = None


class Hardal:
    """The tools' shared back end: one client (one connection pool and rate limiter per key)."""

    def __init__(self, settings: Settings, client: HardalClient) -> None:
        self.settings = settings
        self.client = client

    # -- argument handling ---------------------------------------------------------------------------

    def key(self) -> SecretStr:
        if self.settings.api_key is None:
            raise AuthError(
                f"No Hardal API key is configured. Set {env_name('api_key')} in the MCP server's environment "
                "(Hardal dashboard: signal → Settings → Security → API Keys), or start with --demo to try sample data."
            )
        return self.settings.api_key

    def scope(
        self,
        website_id: str | None,
        timeframe: str | None,
        start_date: str | None,
        end_date: str | None,
        timezone: str | None,
        target_signal_id: str | None = None,
        is_hybrid: bool = False,
    ) -> Scope:
        return Scope(
            website_id=self.website(website_id),
            window=resolve_window(timeframe, start_date, end_date, timezone or self.settings.timezone),
            target_signal_id=check_id("target_signal_id", target_signal_id) if target_signal_id else None,
            is_hybrid=is_hybrid,
        )

    def website(self, website_id: str | None) -> str:
        chosen = website_id or self.settings.website_id
        if not chosen:
            raise InputError(
                "website_id", f"no website given and {env_name('website_id')} is not set; pass the signal id."
            )
        return check_id("website_id", chosen)

    # -- tools ---------------------------------------------------------------------------------------

    async def list_sessions(self, scope: Scope, *, limit: int, offset: int) -> tuple[SessionsResult, str]:
        page = await self.within_deadline(
            self.client.sessions(
                self.key(),
                scope.website_id,
                scope.window,
                limit=limit,
                offset=offset,
                target_signal_id=scope.target_signal_id,
                is_hybrid=scope.is_hybrid,
            )
        )
        rows = [session_row(s) for s in page.sessions]
        total = page.pagination.total if page.pagination else None
        has_more = _has_more(page, offset, limit)
        result = SessionsResult(
            website_id=scope.website_id,
            window=WindowInfo.of(scope.window),
            page=PageInfo(
                total=total,
                offset=offset,
                returned=len(rows),
                next_offset=offset + len(page.sessions) if has_more else None,
                has_more=has_more,
            ),
            sessions=rows,
        )
        text, cut = render_sessions(result)
        if cut:
            kept = len(rows) - cut
            result = result.model_copy(
                update={
                    "sessions": rows[:kept],
                    "omitted": cut,
                    "page": result.page.model_copy(
                        update={"returned": kept, "next_offset": offset + kept, "has_more": True}
                    ),
                }
            )
        return result, text

    async def summarize(
        self, scope: Scope, *, max_sessions: int, top: int, progress: Progress | None = None
    ) -> tuple[Summary, str]:
        digest = Digest(scope.window, top=top)
        stats = await self.scan(scope, max_sessions, digest.add, progress, self.deadline())
        summary = digest.summary(website_id=scope.website_id, total=stats.total, partial_reason=stats.partial_reason)
        return summary, render_summary(summary)

    async def session_activity(
        self,
        website_id: str | None,
        session_id: str,
        *,
        timezone: str | None,
        order: str,
        page: int,
        limit: int,
        target_signal_id: str | None = None,
        is_hybrid: bool = False,
    ) -> tuple[ActivityResult, str]:
        site = self.website(website_id)
        sid = check_id("session_id", session_id)
        tz = check_timezone(timezone or self.settings.timezone)
        if order not in ("asc", "desc"):
            raise InputError("order", f"{order!r} is not 'asc' (oldest first) or 'desc' (newest first).")
        body = await self.within_deadline(
            self.client.activity(
                self.key(),
                site,
                sid,
                timezone=tz,
                page=page,
                limit=limit,
                order=order,
                target_signal_id=check_id("target_signal_id", target_signal_id) if target_signal_id else None,
                is_hybrid=is_hybrid,
            )
        )
        if body.has_more is not None:
            has_more = body.has_more
        elif body.total_count is not None:
            has_more = page * limit < body.total_count
        else:
            has_more = len(body.events) >= limit
        rows = [activity_row(e) for e in body.events]
        result = ActivityResult(
            website_id=site,
            session_id=sid,
            timezone=tz,
            order=order,
            total_events=body.total_count,
            page=page,
            has_more=has_more,
            next_page=page + 1 if has_more else None,
            events=rows,
        )
        text, cut = render_activity(result)
        if cut:
            result = result.model_copy(update={"events": rows[: len(rows) - cut], "omitted": cut})
        return result, text

    # -- scanning ------------------------------------------------------------------------------------

    async def scan(
        self,
        scope: Scope,
        max_sessions: int,
        consume: Callable[[list[Session]], None],
        progress: Progress | None = None,
        deadline: float = math.inf,
    ) -> ScanStats:
        """Read every page of the window (up to `max_sessions`), handing each page to `consume` as it
        arrives. The first page tells the total; the rest are fetched concurrently at fixed offsets."""
        key = self.key()
        size = min(self.settings.page_size, max_sessions)
        stats = ScanStats()
        seen = 0

        async def fetch(offset: int) -> SessionsPage:
            return await self.client.sessions(
                key,
                scope.website_id,
                scope.window,
                limit=size,
                offset=offset,
                target_signal_id=scope.target_signal_id,
                is_hybrid=scope.is_hybrid,
            )

        async def take(page: SessionsPage) -> None:
            nonlocal seen
            room = max(0, max_sessions - seen)
            batch = page.sessions[:room]
            consume(batch)
            seen += len(batch)
            stats.pages += 1
            if progress is not None:
                goal = min(stats.total, max_sessions) if stats.total is not None else None
                await progress(seen, goal, f"{seen:,} sessions read")

        with anyio.CancelScope(deadline=deadline) as first_limit:
            first = await fetch(0)
        if first_limit.cancelled_caught:
            raise self._timed_out()
        stats.total = first.pagination.total if first.pagination else None
        await take(first)
        if not _has_more(first, 0, size) or not first.sessions:
            return stats

        failure: UpstreamError | None = None
        with anyio.CancelScope(deadline=deadline) as limit:
            if stats.total is not None:
                offsets = list(range(size, min(stats.total, max_sessions), size))
                failure = await _gather(offsets, fetch, take)
            else:  # no total to plan with: walk forward until the API says stop
                offset = size
                try:
                    while seen < max_sessions:
                        page = await fetch(offset)
                        await take(page)
                        if not page.sessions or not _has_more(page, offset, size):
                            break
                        offset += size
                except UpstreamError as exc:
                    failure = exc
        if limit.cancelled_caught:
            stats.partial_reason = (
                f"the {self.settings.tool_timeout:g} s time limit (HARDAL_TOOL_TIMEOUT) was reached; "
                "narrow the window or ask again (pages already read are cached)"
            )
        elif failure is not None:
            stats.partial_reason = f"reading stopped when a page failed: {failure.message}"
        elif stats.total is not None and stats.total > max_sessions:
            stats.partial_reason = (
                f"max_sessions={max_sessions:,} reached; raise it (up to {MAX_SESSIONS_CAP:,}) or narrow the window"
            )
        if stats.partial_reason:
            log.info("partial scan of %s: %s", scope.website_id, stats.partial_reason)
        return stats

    def deadline(self) -> float:
        return anyio.current_time() + self.settings.tool_timeout

    def _timed_out(self) -> NetworkError:
        return NetworkError(
            f"Hardal did not answer within the {self.settings.tool_timeout:g} s time limit (HARDAL_TOOL_TIMEOUT). "
            "Try again, or narrow the time window."
        )

    async def within_deadline(self, work: Awaitable[T]) -> T:
        """Run a single-request tool under the overall time limit of a tool call."""
        with anyio.move_on_after(self.settings.tool_timeout):
            return await work
        raise self._timed_out()


async def _gather(
    offsets: list[int],
    fetch: Callable[[int], Awaitable[SessionsPage]],
    take: Callable[[SessionsPage], Awaitable[None]],
) -> UpstreamError | None:
    """Fetch pages with bounded concurrency, handing each over as soon as it arrives. The first failure
    stops the rest and is returned: what was read so far still counts."""
    queue = iter(offsets)
    failures: list[UpstreamError] = []

    async def worker(group: anyio.abc.TaskGroup) -> None:
        try:
            for offset in queue:
                await take(await fetch(offset))
        except UpstreamError as exc:
            failures.append(exc)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for _ in range(min(SCAN_CONCURRENCY, len(offsets))):
            group.start_soon(worker, group)
    return failures[0] if failures else None


def _has_more(page: SessionsPage, offset: int, limit: int) -> bool:
    """Reference §6.6: trust the counts over `hasMore` when they disagree; a short page ends the list."""
    if len(page.sessions) < limit and not page.dropped:
        return False
    pagination = page.pagination
    if pagination is not None and pagination.total is not None:
        return offset + len(page.sessions) + page.dropped < pagination.total
    if pagination is not None and pagination.has_more is not None:
        return pagination.has_more
    return True


def session_row(s: Session) -> SessionRow:
    return SessionRow(
        id=clean(s.id, 128),
        visitor_id=clean(s.visitor_id, 128) if s.visitor_id else None,
        started_at=s.started_at,
        duration_s=s.duration,
        page_views=s.page_views,
        events=s.events,
        pages=[clean(p, 200) for p in s.pages],
        browser=_opt(s.browser),
        os=_opt(s.os),
        device=_opt(s.device),
        country=_opt(s.country),
        fields={clean(k, 64): clean(v, 200) for k, v in s.fields.items()},
    )


def activity_row(e: ActivityEvent) -> ActivityRow:
    properties = dict(e.properties)
    for name, value in (e.model_extra or {}).items():  # undocumented keys are kept, not lost
        if value is not None and name not in properties:
            properties[name] = value if isinstance(value, str) else str(value)
    return ActivityRow(
        at=e.timestamp,
        type=_opt(e.type),
        name=_opt(e.name),
        url=clean(e.url, 200) if e.url else None,
        properties={clean(k, 64): clean(v, 200) for k, v in properties.items()},
    )


def _opt(value: str | None) -> str | None:
    return clean(value, 80) if value else None
