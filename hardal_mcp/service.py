"""What each tool does, without the MCP layer: validate, fetch through the client, aggregate, render.
Methods return `(structured result, text)`; they raise only `hardal_mcp.errors` exceptions."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import anyio
import anyio.abc
from pydantic import Field, SecretStr

from .analytics import (
    Comparison,
    Digest,
    Funnel,
    FunnelResult,
    PathAnalysis,
    PathResult,
    Segment,
    Summary,
)
from .analytics import compare as compare_periods
from .client import HardalClient
from .config import Settings, env_name
from .errors import AuthError, HardalError, InputError, NetworkError, UpstreamError
from .models import ActivityEvent, Session, SessionsPage
from .params import Order, OrderBy, Window, check_id, check_timezone, resolve_window
from .privacy import redact_event, redact_session
from .render import render_activity, render_comparison, render_funnel, render_paths, render_sessions, render_summary
from .results import ActivityResult, ActivityRow, PageInfo, SessionRow, SessionsResult, WindowInfo
from .sanitize import clean

log = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str], Awaitable[None]]
T = TypeVar("T")

MAX_SESSIONS_CAP = 200_000
SCAN_CONCURRENCY = 4  # pages in flight during a scan; the rate limiter still bounds requests per minute
MAX_GROWTH_ROUNDS = 3  # further rounds of pages when later pages report a larger total than the first


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a question points: which site, which period, which signal."""

    website_id: str
    window: Window
    target_signal_id: str | None = None
    is_hybrid: bool = False


@dataclass(slots=True)
class Listing:
    """Sessions found for one list_sessions answer, each with its position in the window."""

    total: int | None
    offset: int
    rows: list[tuple[int, Session]]
    end: int | None  # where the next page starts; None at the end of the window
    segment: str | None = None
    scanned: int = 0
    note: str | None = None


class SummaryResult(Summary):
    comparison: Comparison | None = Field(default=None, description="With compare: change from the previous period")


class _Combined:
    """One progress stream for scans that run side by side (a period and the one before it)."""

    def __init__(self, progress: Progress | None, parts: int) -> None:
        self.progress = progress
        self.done = [0.0] * parts
        self.goals: list[float | None] = [None] * parts

    def part(self, i: int) -> Progress | None:
        if self.progress is None:
            return None
        report = self.progress

        async def update(done: float, goal: float | None, message: str) -> None:
            self.done[i], self.goals[i] = done, goal
            known = [g for g in self.goals if g is not None]
            total = sum(known) if len(known) == len(self.goals) else None
            await report(sum(self.done), total, f"{sum(self.done):,.0f} sessions read")

        return update


@dataclass(slots=True)
class ScanStats:
    total: int | None = None  # the largest total any page reported (the first page's, unless the window grew)
    partial_reason: str | None = None
    read_to: int = 0  # end of the furthest page read: offset + items sent


class Hardal:
    """The tools' shared back end: one client (one connection pool and rate limiter per key)."""

    def __init__(self, settings: Settings, client: HardalClient, key: SecretStr | None = None) -> None:
        self.settings = settings
        self.client = client
        self._key = key or settings.api_key

    def for_key(self, key: SecretStr | None) -> Hardal:
        """The same back end answering with another tenant's key (hosted mode); caches stay per key."""
        return Hardal(self.settings, self.client, key)

    # -- argument handling ---------------------------------------------------------------------------

    def key(self) -> SecretStr:
        if self._key is None:
            raise AuthError(
                f"No Hardal API key is configured. Set {env_name('api_key')} in the MCP server's environment "
                "(Hardal dashboard: signal → Settings → Security → API Keys), or start with --demo to try sample data."
            )
        return self._key

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

    async def list_sessions(
        self, scope: Scope, *, limit: int, offset: int, segment: Segment | None = None, max_scan: int = 5000
    ) -> tuple[SessionsResult, str]:
        """A plain page of the API; with a segment, the next `limit` matches found from `offset` on."""
        if segment is not None:
            return await self._matching_sessions(scope, segment, limit=limit, offset=offset, max_scan=max_scan)
        page = await self.within_deadline(self._page(scope, self.key(), offset, limit))
        has_more = _has_more(page, offset, limit)
        listing = Listing(
            total=page.pagination.total if page.pagination else None,
            offset=offset,
            rows=[(offset + i, s) for i, s in enumerate(page.sessions)],
            end=offset + len(page.sessions) + page.dropped if has_more else None,
        )
        return self._sessions_answer(scope, listing)

    async def _matching_sessions(
        self, scope: Scope, segment: Segment, *, limit: int, offset: int, max_scan: int
    ) -> tuple[SessionsResult, str]:
        key, size, deadline = self.key(), self.settings.page_size, self.deadline()
        matches = segment.matcher()
        visits: dict[str, int] | None = None
        if segment.returning is not None:  # a property of the whole window: count visitors first
            visits = await self._visits(scope, deadline)
        listing = Listing(total=None, offset=offset, rows=[], end=None, segment=segment.describe())
        position = offset
        page_start = offset - offset % size  # aligned with summarize's pages, so they come from the cache
        seen: set[str] = set()
        more_pages, page_end = True, position
        with anyio.CancelScope(deadline=deadline) as limit_scope:
            while more_pages and len(listing.rows) < limit and listing.scanned < max_scan:
                page = await self._page(scope, key, page_start, size)
                if page.pagination is not None and page.pagination.total is not None:
                    listing.total = page.pagination.total
                for i, s in enumerate(page.sessions):
                    if page_start + i < position:
                        continue
                    if len(listing.rows) >= limit or listing.scanned >= max_scan:
                        break
                    position = page_start + i + 1
                    listing.scanned += 1
                    if s.id in seen:
                        continue
                    seen.add(s.id)
                    if matches(s) and (visits is None or _is_returning(s, visits) is segment.returning):
                        listing.rows.append((page_start + i, s))
                page_end = page_start + len(page.sessions)
                more_pages = bool(page.sessions) and _has_more(page, page_start, size)
                page_start += size
        if limit_scope.cancelled_caught:
            listing.note = f"the {self.settings.tool_timeout:g} s time limit was reached; continue from next_offset"
        listing.end = None if not more_pages and position >= page_end else position
        return self._sessions_answer(scope, listing)

    def _sessions_answer(self, scope: Scope, listing: Listing) -> tuple[SessionsResult, str]:
        """Render the rows; if the text would exceed the budget, keep fewer rows and continue after them."""
        rows = [session_row(s) for _, s in listing.rows]
        for _ in range(2):
            result = SessionsResult(
                website_id=scope.website_id,
                window=WindowInfo.of(scope.window),
                segment=listing.segment,
                scanned=listing.scanned if listing.segment else None,
                note=listing.note,
                page=PageInfo(
                    total=listing.total,
                    offset=listing.offset,
                    returned=len(rows),
                    next_offset=listing.end,
                    has_more=listing.end is not None,
                ),
                sessions=rows,
                omitted=len(listing.rows) - len(rows),
            )
            text, cut = render_sessions(result)
            if not cut:
                break
            rows = rows[: len(rows) - cut]
            listing.end = listing.rows[len(rows)][0]  # resume at the first row left out
        return result, text

    async def summarize(
        self,
        scope: Scope,
        *,
        max_sessions: int,
        top: int,
        segment: Segment | None = None,
        compare: bool = False,
        progress: Progress | None = None,
    ) -> tuple[SummaryResult, str]:
        deadline = self.deadline()
        windows = [scope] + ([replace(scope, window=scope.window.previous())] if compare else [])
        digests = [Digest(s.window, top=top, segment=segment) for s in windows]
        stats = [ScanStats() for _ in windows]
        report = _Combined(progress, len(windows))

        failures: list[HardalError] = []

        async def run(i: int, group: anyio.abc.TaskGroup) -> None:
            try:
                stats[i] = await self.scan(windows[i], max_sessions, digests[i].add, report.part(i), deadline)
            except HardalError as exc:  # one period failing fails the answer; say why, not "ExceptionGroup"
                failures.append(exc)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for i in range(len(windows)):
                group.start_soon(run, i, group)
        if failures:
            raise failures[0]
        summaries = [
            d.summary(website_id=scope.website_id, total=st.total, partial_reason=st.partial_reason)
            for d, st in zip(digests, stats, strict=True)
        ]
        comparison = compare_periods(*summaries) if compare else None
        if comparison is not None and scope.window.end >= scope.window.today():
            comparison.notes.append("the current period includes today, which is not over: expect lower counts")
        result = SummaryResult.model_validate({**summaries[0].model_dump(), "comparison": comparison})
        text = render_summary(summaries[0])
        if result.comparison is not None:
            text += "\n\n" + render_comparison(result.comparison)
        return result, text

    async def funnel(
        self,
        scope: Scope,
        steps: list[str],
        *,
        breakdown: str | None,
        top: int,
        segment: Segment | None,
        max_sessions: int,
        progress: Progress | None = None,
    ) -> tuple[FunnelResult, str]:
        analysis = Funnel(scope.window, steps, breakdown=breakdown, top=top, segment=segment)
        stats = await self.scan(scope, max_sessions, analysis.add, progress, self.deadline())
        result = analysis.result(website_id=scope.website_id, total=stats.total, partial_reason=stats.partial_reason)
        return result, render_funnel(result)

    async def paths(
        self,
        scope: Scope,
        page: str | None,
        *,
        top: int,
        segment: Segment | None,
        max_sessions: int,
        progress: Progress | None = None,
    ) -> tuple[PathResult, str]:
        analysis = PathAnalysis(scope.window, page, top=top, segment=segment)
        stats = await self.scan(scope, max_sessions, analysis.add, progress, self.deadline())
        result = analysis.result(website_id=scope.website_id, total=stats.total, partial_reason=stats.partial_reason)
        return result, render_paths(result)

    async def session_activity(
        self,
        website_id: str | None,
        session_id: str,
        *,
        timezone: str | None,
        order: Order,
        page: int,
        limit: int,
        order_by: OrderBy = "timestamp",
        target_signal_id: str | None = None,
        is_hybrid: bool = False,
    ) -> tuple[ActivityResult, str]:
        site = self.website(website_id)
        sid = check_id("session_id", session_id)
        tz = check_timezone(timezone or self.settings.timezone)
        body = await self.within_deadline(
            self.client.activity(
                self.key(),
                site,
                sid,
                timezone=tz,
                page=page,
                limit=limit,
                order=order,
                order_by=order_by,
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
        events = [redact_event(e) for e in body.events] if self.settings.redact_pii else body.events
        rows = [activity_row(e) for e in events]
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
        consume: Callable[[list[Session], int], None],
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
            page = await self._page(scope, key, offset, size)
            stats.read_to = max(stats.read_to, offset + len(page.sessions) + page.dropped)
            if page.pagination is not None and page.pagination.total is not None and stats.total is not None:
                stats.total = max(stats.total, page.pagination.total)
            return page

        async def take(page: SessionsPage) -> None:
            nonlocal seen
            room = max(0, max_sessions - seen)
            batch = page.sessions[:room]
            consume(batch, page.dropped)  # unreadable items are counted and told, not lost silently
            seen += len(batch)
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
                planned = min(stats.total, max_sessions)
                failure = await _gather(list(range(size, planned, size)), fetch, take)
                for _ in range(MAX_GROWTH_ROUNDS):  # later pages saw a larger total: read on from there
                    grown = min(stats.total, max_sessions)
                    if failure is not None or grown <= max(planned, stats.read_to):
                        break
                    failure = await _gather(list(range(stats.read_to, grown, size)), fetch, take)
                    planned = grown
            else:  # no total to plan with: walk forward until the API says stop
                offset = size
                try:
                    while seen < max_sessions:
                        page = await fetch(offset)
                        await take(page)
                        if not page.sessions and not page.dropped:
                            if page.pagination is not None and page.pagination.has_more:
                                stats.partial_reason = (
                                    f"Hardal sent an empty page at offset {offset:,} while saying more sessions "
                                    "follow; ask again later"
                                )
                            break
                        if not _has_more(page, offset, size):
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

    async def _page(self, scope: Scope, key: SecretStr, offset: int, limit: int) -> SessionsPage:
        page = await self.client.sessions(
            key,
            scope.website_id,
            scope.window,
            limit=limit,
            offset=offset,
            target_signal_id=scope.target_signal_id,
            is_hybrid=scope.is_hybrid,
        )
        if self.settings.redact_pii:
            for s in page.sessions:
                redact_session(s)
        return page

    async def _visits(self, scope: Scope, deadline: float) -> dict[str, int]:
        """Sessions per visitor over the whole window (what `returning` means)."""
        seen: set[str] = set()
        visits: dict[str, int] = {}

        def count(batch: list[Session], _unreadable: int) -> None:
            for s in batch:
                if s.id not in seen and s.visitor_id is not None:
                    seen.add(s.id)
                    visits[s.visitor_id] = visits.get(s.visitor_id, 0) + 1

        await self.scan(scope, MAX_SESSIONS_CAP, count, deadline=deadline)
        return visits

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


def _is_returning(s: Session, visits: dict[str, int]) -> bool:
    return s.visitor_id is not None and visits.get(s.visitor_id, 0) > 1


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
