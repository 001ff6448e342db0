"""What each tool does, without the MCP layer: validate, fetch through the client, aggregate, render.
Methods return `(structured result, text)`; they raise only `hardal_mcp.errors` exceptions."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Generic, TypeVar

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
    Scan,
    Segment,
    Summary,
)
from .analytics import compare as compare_periods
from .analytics.digest import estimate_summary
from .analytics.estimate import Estimator, Record
from .analytics.funnel import estimate_funnel
from .analytics.paths import estimate_paths
from .client import HardalClient
from .config import Settings, env_name
from .errors import AuthError, HardalError, InputError, own_errors
from .models import ActivityEvent, Session
from .params import Order, OrderBy, check_id, check_timezone, resolve_window
from .planner import (
    SAFETY_SECONDS,
    Allowance,
    Outcome,
    Page,
    Planner,
    Scope,
    fetch_page,
    has_more_after,
    starting_by,
    timed_out_error,
)
from .privacy import redact_event
from .render import render_activity, render_comparison, render_funnel, render_paths, render_sessions, render_summary
from .results import ActivityResult, ActivityRow, PageInfo, SessionRow, SessionsResult, WindowInfo
from .sanitize import clean
from .store import Days

log = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str], Awaitable[None]]
T = TypeVar("T")
A = TypeVar("A", bound=Scan)
R = TypeVar("R")

MAX_SESSIONS_CAP = 200_000


class Reading(Generic[A]):
    """One analysis fed by a planner's read: the whole read goes to `analysis`; when the read is a
    sample, each page also gets an analysis of its own, kept as a `Record` for the estimates."""

    def __init__(self, make: Callable[[], A]) -> None:
        self.make = make
        self.analysis = make()
        self.pages: dict[int, Record] = {}

    def consume(self, page: Page) -> None:
        self.analysis.add(page.frame, page.dropped)
        if page.cluster is not None:
            alone = self.make()
            alone.add(page.frame)
            self.pages[page.cluster] = alone.record()

    def finish(
        self, website_id: str, outcome: Outcome, build: Callable[..., R], estimate: Callable[[R, Estimator], R]
    ) -> R:
        """The analysis' result; scaled by `estimate` when the read was a sample."""
        sampled = outcome.design is not None and outcome.design.sampled
        record = Record() if sampled else None  # every group of the whole read: only estimates need them
        result = build(
            self.analysis,
            website_id=website_id,
            total=outcome.total,
            partial_reason=outcome.partial_reason,
            record=record,
        )
        if outcome.design is not None and record is not None:
            result = estimate(result, Estimator(outcome.design, record, self.pages))
        return result


class Background:
    """Work that outlives a tool call (filling the day store), one task per key and window at a time."""

    def __init__(self, group: anyio.abc.TaskGroup) -> None:
        self._group = group
        self._running: set[str] = set()

    def start(self, name: str, work: Callable[[], Coroutine[Any, Any, object]]) -> None:
        if name in self._running:
            return
        self._running.add(name)

        async def run() -> None:
            try:
                await work()
            except HardalError as exc:  # the next question will tell the user; here it only stops the fill
                log.info("background fill stopped: %s", exc.message)
            finally:
                self._running.discard(name)

        self._group.start_soon(run)


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


class Hardal:
    """The tools' shared back end: one client (one connection pool and rate limiter per key)."""

    def __init__(
        self,
        settings: Settings,
        client: HardalClient,
        key: SecretStr | None = None,
        *,
        store: Days | None = None,
        background: Background | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self._key = key or settings.api_key
        self.store = store
        self.background = background

    def for_key(self, key: SecretStr | None) -> Hardal:
        """The same back end answering with another tenant's key (hosted mode); caches stay per key."""
        return Hardal(self.settings, self.client, key, store=self.store, background=self.background)

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
        page = await self.within_deadline(fetch_page(self.client, self.key(), scope, offset, limit))
        has_more = has_more_after(page, offset, limit)
        listing = Listing(
            total=page.pagination.total if page.pagination else None,
            offset=offset,
            rows=[(offset + i, s) for i, s in enumerate(page.sessions)],
            end=offset + len(page) + page.dropped if has_more else None,
        )
        return self._sessions_answer(scope, listing)

    async def _matching_sessions(
        self, scope: Scope, segment: Segment, *, limit: int, offset: int, max_scan: int
    ) -> tuple[SessionsResult, str]:
        deadline = self.deadline()
        allowance = self.allowance(deadline)
        visits: dict[str, int] | None = None
        if segment.returning is not None:  # a property of the whole window: count visitors first
            visits = await self._visits(scope, deadline, allowance)
        listing = Listing(total=None, offset=offset, rows=[], end=None, segment=segment.describe())
        position = page_end = offset
        seen: set[str] = set()
        ended = read = False
        planner = self.planner(scope, deadline, allowance)
        with starting_by(deadline), anyio.CancelScope(deadline=deadline) as limit_scope:
            async for start, page in planner.pages_from(offset):
                read = True
                if page.pagination is not None and page.pagination.total is not None:
                    listing.total = page.pagination.total
                matching = set(segment.keep(page.frame.with_row_index("at")).get_column("at").to_list())
                for i, s in enumerate(page.sessions):
                    if start + i < position:
                        continue
                    if len(listing.rows) >= limit or listing.scanned >= max_scan:
                        break
                    position = start + i + 1
                    listing.scanned += 1
                    if s.id in seen:
                        continue
                    seen.add(s.id)
                    if i in matching and (visits is None or _is_returning(s, visits) is segment.returning):
                        listing.rows.append((start + i, s))
                page_end = start + len(page)
                ended = not len(page) or not has_more_after(page, start, self.settings.page_size)
                if len(listing.rows) >= limit or listing.scanned >= max_scan:
                    break
        # Nothing read: an answer to continue from would send the caller round the same offset again.
        if limit_scope.cancelled_caught:
            if not read:
                raise timed_out_error(self.settings)
            listing.note = f"the {self.settings.tool_timeout:g} s time limit was reached; continue from next_offset"
        elif not ended and position == page_end and planner.stopped:
            if not read:
                raise planner.stopped
            listing.note = f"{planner.stopped.message}; continue from next_offset"
        listing.end = None if ended and position >= page_end else position
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
        scopes = [scope] + ([replace(scope, window=scope.window.previous())] if compare else [])
        allowances = self.allowance(deadline).split(len(scopes))
        report = _Combined(progress, len(scopes))
        readings = [Reading(partial(Digest, s.window, top=top, segment=segment)) for s in scopes]
        outcomes: list[Outcome] = [Outcome() for _ in scopes]

        async def run(i: int) -> None:
            outcomes[i] = await self._read(
                scopes[i],
                readings[i].consume,
                max_sessions=max_sessions,
                exact=_exact_reason(segment),
                progress=report.part(i),
                deadline=deadline,
                allowance=allowances[i],
            )

        with own_errors():  # one period failing fails the answer with its error, not an ExceptionGroup
            async with anyio.create_task_group() as group:
                for i in range(len(scopes)):
                    group.start_soon(run, i)
        scale = partial(estimate_summary, segmented=segment is not None)
        summaries = [
            reading.finish(scope.website_id, outcome, Digest.summary, scale)
            for reading, outcome in zip(readings, outcomes, strict=True)
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
        reading = Reading(partial(Funnel, scope.window, steps, breakdown=breakdown, top=top, segment=segment))
        outcome = await self._read(
            scope, reading.consume, max_sessions=max_sessions, exact=_exact_reason(segment), progress=progress
        )
        result = reading.finish(scope.website_id, outcome, Funnel.result, estimate_funnel)
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
        reading = Reading(partial(PathAnalysis, scope.window, page, top=top, segment=segment))
        outcome = await self._read(
            scope, reading.consume, max_sessions=max_sessions, exact=_exact_reason(segment), progress=progress
        )
        result = reading.finish(scope.website_id, outcome, PathAnalysis.result, estimate_paths)
        return result, render_paths(result)

    async def _read(
        self,
        scope: Scope,
        consume: Callable[[Page], None],
        *,
        max_sessions: int,
        exact: str | None,
        progress: Progress | None = None,
        deadline: float | None = None,
        allowance: Allowance | None = None,
    ) -> Outcome:
        """One planned read of a window (by default with the call's own deadline and allowance). When it was
        sampled, kept too many closed days to store at once, or was refused because only a whole read
        would do, the window's closed days are then stored in the background, so that asking again later
        is exact."""
        deadline = self.deadline() if deadline is None else deadline
        allowance = self.allowance(deadline) if allowance is None else allowance
        planner = self.planner(scope, deadline, allowance)
        try:
            outcome = await planner.read(consume, max_sessions=max_sessions, exact=exact, progress=progress)
        except InputError:  # too big to read whole now (the refusal says the days are being stored)
            self._fill_later(scope)
            raise
        if outcome.design is not None or outcome.unstored:
            self._fill_later(scope)
        return outcome

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

    # -- reading -------------------------------------------------------------------------------------

    def planner(self, scope: Scope, deadline: float, allowance: Allowance) -> Planner:
        return Planner(
            self.client, self.settings, self.key(), scope, store=self.store, deadline=deadline, allowance=allowance
        )

    def allowance(self, deadline: float) -> Allowance:
        """What one call may send: the requests the key's budget lets start before the deadline."""
        budget = self.client.budget(self.key())

        def live() -> int:
            # What the window lets start by the deadline, plus a full minute's worth for each further
            # minute before it (a long HARDAL_TOOL_TIMEOUT can wait the window out).
            seconds = max(0.0, deadline - anyio.current_time() - SAFETY_SECONDS)
            return budget.available(seconds) + self.settings.rate_limit * int(seconds // 60)

        return Allowance(live(), live)

    async def _visits(self, scope: Scope, deadline: float, allowance: Allowance) -> dict[str, int]:
        """Sessions per visitor over the whole window (what `returning` means): needs every session."""
        seen: set[str] = set()
        visits: dict[str, int] = {}

        def count(page: Page) -> None:
            columns = page.frame.get_column("id").to_list(), page.frame.get_column("visitor_id").to_list()
            for sid, visitor in zip(*columns, strict=True):
                if sid not in seen and visitor is not None:
                    seen.add(sid)
                    visits[visitor] = visits.get(visitor, 0) + 1

        outcome = await self._read(
            scope, count, max_sessions=MAX_SESSIONS_CAP, exact="returning", deadline=deadline, allowance=allowance
        )
        if outcome.partial_reason:
            raise InputError("segment", f"returning needs every session of the window, but {outcome.partial_reason}.")
        return visits

    def _fill_later(self, scope: Scope) -> None:
        """Store the window's closed days the store lacks, in the background with spare budget."""
        if self.background is None or self.store is None:
            return
        planner = self.planner(scope, math.inf, Allowance(MAX_SESSIONS_CAP))
        self.background.start(f"{self.client.fingerprints.of(self.key())}/{scope}", planner.fill)

    def deadline(self) -> float:
        return anyio.current_time() + self.settings.tool_timeout

    async def within_deadline(self, work: Awaitable[T]) -> T:
        """Run a single-request tool under the overall time limit of a tool call (its request too: a rate
        budget that frees up too late is said at once)."""
        deadline = self.deadline()
        with anyio.CancelScope(deadline=deadline), starting_by(deadline):
            return await work
        raise timed_out_error(self.settings)


def _exact_reason(segment: Segment | None) -> str | None:
    """Why a sample would not do: `returning` is a property of a visitor over the whole window."""
    return "returning" if segment is not None and segment.returning is not None else None


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
