"""The one pager: plans how a window is read within the rate budget, then reads it.

Hardal allows about 100 requests a minute per key and a page holds at most 1,000 sessions, so a
busy site's month cannot be read within one tool call. A read therefore goes:

1. Closed days already in the day store are read from disk: no request.
2. Each run of missing days is probed with its first page, which tells the run's exact total.
3. If every page of every run fits the call's allowance (and `max_sessions`), all are read: exact.
4. Otherwise one page of each missing day is read first: any page of a day tells the day's exact total,
   so it is taken at a place in the day that rotates from day to day (a low-discrepancy sequence; its
   offset from a guess of the day's size, the window's total shared over its days), so that even at one
   page a day the window's pages cover every hour of the day. A guess past a day's end costs that day's
   page, never its total. The rest of the allowance goes first to days still without a page, then over
   the days in proportion to their pages, each day's taken in a fixed low-discrepancy order (a larger
   plan extends a smaller one; asking again reads the same, cached, pages). The pages read form a
   stratified cluster sample, a day a stratum; `analytics.estimate` turns it into estimates with margins.
   When fewer than half of the window's days have a page, no estimate is made: the answer is of the
   sessions read, and says why.

What cannot be read is said, never hidden. A page left unread because the rate budget or the time is
spent, or because Hardal kept failing (5xx, network) through the retries, makes the answer partial, and
its note says why and when to ask again; when nothing at all could be read, that reason is the error
(a spent budget: RateLimitError with `retry_after`). When the budget is spent before a run could be
probed (with days at hand, the probe waits for the budget half the time left at most), the answer comes
from what is at hand: stored days and days whose first pages are cached, partial, the window's total
unknown. Every other error (a refused key, an unknown website, an unreadable answer, a bad setting)
ends the read as itself: asking again would not mend it.

Days read whole and old enough are put into the day store; after a sampled answer the service fills
the rest of the window's closed days in the background with spare budget.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from pydantic import SecretStr

from .analytics.estimate import Design, Group
from .budget import START_BY, too_late
from .client import HardalClient, paused_error
from .config import Settings
from .errors import InputError, NetworkError, RateLimitError, ServerError, UpstreamError, own_errors
from .frames import SessionsPage
from .params import Window
from .store import DayKey, Days

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str], Awaitable[None]]

CONCURRENCY = 4  # pages in flight; the rate limiter still bounds requests per minute
MAX_GROWTH_ROUNDS = 3  # further rounds when later pages report a larger total than the first (a live window)
HOLD_FOR_STORE = 50_000  # sessions an exact read keeps in memory to store its closed days afterwards
SAFETY_SECONDS = 2.0  # requests are planned to start this long before the deadline
FILL_RESERVE = 0.2  # share of the per-minute budget the background fill leaves to interactive calls
FILL_CLAIM = 300.0  # seconds the background fill holds its claim on the day it fetches
CLAIM_POLL = 0.25  # seconds between looks for a day another replica is fetching


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a question points: which site, which period, which signal."""

    website_id: str
    window: Window
    target_signal_id: str | None = None
    is_hybrid: bool = False

    def day(self, day: date) -> Scope:
        return replace(self, window=Window("custom", day, day, self.window.timezone))

    def span(self, first: date, last: date) -> Scope:
        return replace(self, window=Window("custom", first, last, self.window.timezone))


@dataclass(slots=True)
class Page:
    """Sessions handed to an analysis. `cluster` is the page's index in the sample design when the read
    is sampled (every upstream page of a sampled read has one), None for pages read as part of a whole."""

    frame: pl.DataFrame
    dropped: int = 0
    cluster: int | None = None


@dataclass(slots=True)
class Outcome:
    total: int | None = None  # sessions in the window, exact (None: Hardal did not say)
    partial_reason: str | None = None
    design: Design | None = None  # set when the figures must be estimated
    stored_days: int = 0  # days read from the store
    unstored: bool = False  # closed days were read whole but too many at once to keep for the store


class Allowance:
    """Requests one tool call may still send (shared by the windows of a comparison). Plans are sized
    from `left`, a snapshot of the key's budget; `live`, when given, is asked again before each request,
    since other calls and processes spend the same budget meanwhile: a request that could not start
    before the deadline is not sent (and the plan's pages are ordered so that what is read stays spread)."""

    def __init__(self, requests: int, live: Callable[[], int] | None = None) -> None:
        self.left = requests
        self.live = live

    def take(self) -> bool:
        if self.left <= 0 or (self.live is not None and self.live() <= 0):
            return False
        self.left -= 1
        return True

    def split(self, parts: int) -> list[Allowance]:
        shares = [self.left // parts + (i < self.left % parts) for i in range(parts)]
        self.left = 0
        return [Allowance(n, self.live) for n in shares]


@dataclass(frozen=True, slots=True)
class _Got:
    """What a page said of itself, once its sessions were handed on."""

    end: int  # sessions and unreadable items it held
    total: int | None


@dataclass(slots=True)
class _Day:
    day: date
    total: int | None = None  # exact: every page of the day, even one past its end, tells it
    read: set[int] = field(default_factory=set)  # pages of the day's grid read (page p: offset p * size)
    clusters: list[int] = field(default_factory=list)  # their cluster indices
    whole: bool = False  # its first page held every session of the day
    places: list[float] = field(default_factory=list)  # where each page starts in the day (0: its newest session)


class Planner:
    """Reads one window for one tool call (see the module docstring)."""

    def __init__(
        self,
        client: HardalClient,
        settings: Settings,
        key: SecretStr,
        scope: Scope,
        *,
        store: Days | None,
        deadline: float,
        allowance: Allowance,
    ) -> None:
        self.client = client
        self.settings = settings
        self.key = key
        self.scope = scope
        self.store = store
        self.deadline = deadline
        self.allowance = allowance
        self.size = settings.page_size
        self._clusters: list[int] = []  # sessions per cluster, by index
        self._days: list[int] = []  # each cluster's day, as an index in the window
        self._fingerprint = client.fingerprints.of(key)
        self.stopped: UpstreamError | None = None  # why the last page not read was not, if one was not

    # -- the read --------------------------------------------------------------------------------------

    async def read(
        self,
        consume: Callable[[Page], None],
        *,
        max_sessions: int,
        exact: str | None = None,
        progress: Progress | None = None,
    ) -> Outcome:
        """Hand every page read to `consume`. `exact`, when given, is why a sample would not do: the read
        then refuses to sample (InputError naming the reason) instead of estimating."""
        with starting_by(self.deadline):
            return await self._read(consume, max_sessions=max_sessions, exact=exact, progress=progress)

    async def _read(
        self,
        consume: Callable[[Page], None],
        *,
        max_sessions: int,
        exact: str | None,
        progress: Progress | None,
    ) -> Outcome:
        outcome = Outcome()
        window = self.scope.window
        days = [window.start + timedelta(days=i) for i in range(window.days)]
        stored: dict[date, int] = {}
        for day in days:
            await self._take_stored(day, stored, consume)
        claimed, claim = await self._claim([d for d in days if d not in stored], stored, consume)
        try:
            return await self._read_missing(days, stored, outcome, consume, max_sessions, exact, progress)
        finally:
            if claim is not None:
                await self._release(claimed, claim)

    async def _claim(
        self, missing: list[date], stored: dict[date, int], consume: Callable[[Page], None]
    ) -> tuple[list[date], str | None]:
        """Claim the missing closed days this read is to fetch (`store.Days.claim`): the days and the claim.
        While another replica holds one of them, they are waited for, half the time left at most, each read
        from the store once there; those still missing then are fetched unclaimed."""
        if self.store is None:
            return [], None
        seconds = max(1.0, self.deadline - anyio.current_time())
        until = anyio.current_time() + (self.deadline - anyio.current_time()) / 2
        pending = [day for day in missing if self._closed(day)]
        while pending:
            asked = list(pending)
            claim = await self._try_claim(asked, seconds, stored, consume)
            pending = [day for day in asked if day not in stored]
            if claim is not None:
                return asked, claim
            if anyio.current_time() >= until:
                break
            await anyio.sleep(CLAIM_POLL)
        return [], None

    async def _try_claim(
        self, days: list[date], seconds: float, stored: dict[date, int], consume: Callable[[Page], None]
    ) -> str | None:
        """One attempt at claiming `days` (`store.Days.claim`). Then, from a store that coordinates, the days
        are looked for again: a holder may have stored one and let go meanwhile (`_take_stored`)."""
        assert self.store is not None
        claim = await anyio.to_thread.run_sync(self.store.claim, [self._day_key(day) for day in days], seconds)
        if claim != "":  # "": one machine's store, no other holder
            for day in days:
                await self._take_stored(day, stored, consume)
        return claim

    async def _take_stored(self, day: date, stored: dict[date, int], consume: Callable[[Page], None]) -> None:
        """The day from the store, if it is there: counted in `stored` and handed to `consume`."""
        sessions = await self._stored(day)
        if sessions is not None:
            stored[day] = sessions.height
            consume(Page(sessions))

    async def _release(self, days: list[date], claim: str) -> None:
        assert self.store is not None
        await anyio.to_thread.run_sync(self.store.release, [self._day_key(day) for day in days], claim)

    async def _read_missing(
        self,
        days: list[date],
        stored: dict[date, int],
        outcome: Outcome,
        consume: Callable[[Page], None],
        max_sessions: int,
        exact: str | None,
        progress: Progress | None,
    ) -> Outcome:
        if stored:  # kept days go only to a key Hardal still accepts
            await self.client.vouch(self.key, self.scope.website_id)
        outcome.stored_days = len(stored)
        runs = _runs([d for d in days if d not in stored])
        if not runs:
            outcome.total = sum(stored.values())
            return outcome

        missing = [d for run in runs for d in run]
        if exact is None and all(self._first_at_hand(d) for d in missing):
            # Every day's first page is at hand (an earlier, sampled question): the days' totals are known
            # without a request, and a spent budget still answers from the pages already read.
            return self._settled(await self._sample(runs, consume, stored, outcome, max_sessions, progress))
        probes: dict[int, SessionsPage] = {}
        with starting_by(self._probe_by(missing, stored)), anyio.CancelScope(deadline=self.deadline) as limit:
            await self._gather(
                [self.scope.span(run[0], run[-1]) for run in runs],
                [0] * len(runs),
                lambda page, i: probes.__setitem__(i, page),
            )
        if limit.cancelled_caught or len(probes) < len(runs):
            if exact is None and not limit.cancelled_caught and isinstance(self.stopped, RateLimitError):
                return await self._at_hand(missing, consume, stored, outcome, max_sessions, progress)
            raise self._failure(limit.cancelled_caught)
        first_pages = [probes[i] for i in range(len(runs))]
        totals = [_total(p) for p in first_pages]
        budget_pages = math.ceil(max_sessions / self.size)
        rest = [
            (run, offset) for run, t in zip(runs, totals, strict=True) for offset in range(self.size, t or 0, self.size)
        ]
        fits = len(rest) + len(runs) <= budget_pages and self.allowance.left >= sum(
            not self._cached(self.scope.span(run[0], run[-1]), offset) for run, offset in rest
        )
        if fits or None in totals:  # without totals there is nothing to plan a sample with: walk on
            return await self._exact(runs, first_pages, consume, stored, outcome, max_sessions, progress)
        if exact is not None:
            whole = sum(t or 0 for t in totals) + sum(stored.values())
            raise InputError(
                "segment",
                f"{exact} needs every session of the window, and its {whole:,} sessions are more than the rate "
                "budget lets one call read now. Narrow the window, or ask again in a few minutes: closed days are "
                "being stored in the background.",
            )
        outcome.total = sum(t or 0 for t in totals) + sum(stored.values())
        return self._settled(await self._sample(runs, consume, stored, outcome, max_sessions, progress))

    def _settled(self, outcome: Outcome) -> Outcome:
        """A sample too thin to estimate from says why the read stopped; one that read nothing at all (no
        page, no stored day) fails with that reason (a spent budget: when to try again)."""
        if outcome.design is not None:
            return outcome
        if not self._clusters and not outcome.stored_days:
            raise self._failure(anyio.current_time() >= self.deadline)
        if self.stopped is not None and not outcome.partial_reason:
            outcome.partial_reason = self.stopped.message
        return outcome

    async def _at_hand(
        self,
        missing: list[date],
        consume: Callable[[Page], None],
        stored: dict[date, int],
        outcome: Outcome,
        max_sessions: int,
        progress: Progress | None,
    ) -> Outcome:
        """The budget was spent before the window's totals could be asked: answer from the stored days and
        the days whose first pages are cached (an earlier question's sample), partial, the window's total
        unknown. With nothing at hand, the spent budget is the answer."""
        spent = self.stopped
        assert spent is not None
        self.allowance.left = 0  # only what is at hand: the budget just said no
        cached = self._days_at_hand(missing)
        if not cached and not stored:
            raise spent
        if cached:
            await self._sample(_runs(cached), consume, stored, outcome, max_sessions, progress)
        outcome.design = outcome.total = None  # the other days' sessions are unknown: nothing to scale to
        days, of = len(cached) + len(stored), self.scope.window.days
        outcome.partial_reason = f"only {days} of the window's {of} days were at hand; {spent.message}"
        return outcome

    def _probe_by(self, missing: list[date], stored: dict[date, int]) -> float:
        """How long the runs' first pages may wait for the rate budget: with days at hand, half the time
        left at most (the other half reads those days, `_at_hand`, if the budget stays spent); else, as
        long as the call allows."""
        if not stored and not self._days_at_hand(missing):
            return self.deadline
        now = anyio.current_time()
        return now + (self.deadline - now) / 2

    def _days_at_hand(self, missing: list[date]) -> list[date]:
        """The missing days whose first pages are cached (an earlier question's sample)."""
        return [d for d in missing if self._first_at_hand(d)]

    async def _exact(
        self,
        runs: list[list[date]],
        first_pages: list[SessionsPage],
        consume: Callable[[Page], None],
        stored: dict[date, int],
        outcome: Outcome,
        max_sessions: int,
        progress: Progress | None,
    ) -> Outcome:
        """Read every page of every run; store the closed days of runs read whole."""
        import polars as pl

        outcome.total = sum(stored.values())
        read = 0
        for run, first in zip(runs, first_pages, strict=True):
            scope = self.scope.span(run[0], run[-1])
            keep = self.store is not None and any(self._closed(d) for d in run)
            held: list[pl.DataFrame] | None = [] if keep else None
            total = _total(first)
            failure: str | None = None

            def take(page: SessionsPage, held: list[pl.DataFrame] | None = held) -> None:
                nonlocal read
                room = max(0, max_sessions - read)
                batch = page.frame.head(room)
                read += batch.height
                consume(Page(batch, page.dropped))
                if held is not None:
                    held.append(batch)
                    if sum(f.height for f in held) > HOLD_FOR_STORE or page.dropped:
                        held.clear()  # not kept whole: the background fill stores these days one by one
                        outcome.unstored = True

            take(first)
            if total is None:  # no total to plan with: walk on until the API says stop
                failure = await self._walk(scope, first, take, max_sessions)
            else:
                read_to = len(first) + first.dropped
                planned = min(total, max_sessions)
                for _ in range(MAX_GROWTH_ROUNDS + 1):
                    offsets = list(range(max(read_to, self.size), planned, self.size))
                    if not offsets or failure:
                        break
                    with anyio.CancelScope(deadline=self.deadline) as limit:
                        pages = await self._gather([scope] * len(offsets), offsets, lambda page, _: take(page))
                    if limit.cancelled_caught:
                        failure = self._deadline_text()
                        break
                    if any(p is None for p in pages):
                        failure = self._why()
                        break
                    for offset, got in zip(offsets, pages, strict=True):
                        assert got is not None
                        read_to = max(read_to, offset + got.end)
                        total = max(total, got.total or 0)
                    if min(total, max_sessions) <= planned:
                        break
                    planned = min(total, max_sessions)
                if total > max_sessions and not failure:
                    failure = f"max_sessions={max_sessions:,} reached; raise it or narrow the window"
            outcome.total = None if outcome.total is None or total is None else outcome.total + total
            if failure:
                outcome.partial_reason = outcome.partial_reason or failure
            elif held and (whole := pl.concat(held)).height == total == whole.get_column("id").n_unique():
                await self._store_days(run, whole)  # read whole, once each
            if progress is not None:
                await progress(read, outcome.total, f"{read:,} sessions read")
        if outcome.partial_reason:
            log.info("partial read of %s: %s", self.scope.website_id, outcome.partial_reason)
        return outcome

    async def _walk(
        self, scope: Scope, first: SessionsPage, take: Callable[[SessionsPage], None], max_sessions: int
    ) -> str | None:
        """Pages without totals: forward one by one until a short page (reference §6.6)."""
        offset, page, seen = 0, first, len(first)
        with anyio.CancelScope(deadline=self.deadline) as limit:
            while has_more_after(page, offset, self.size) and seen < max_sessions:
                offset += self.size
                got = await self._page(scope, offset)
                if got is None:
                    return self._why()
                page = got
                take(page)
                seen += len(page)
                if not len(page) and not page.dropped:
                    if page.pagination is not None and page.pagination.has_more:
                        return (
                            f"Hardal sent an empty page at offset {offset:,} while saying more sessions follow; "
                            "ask again later"
                        )
                    break
        return self._deadline_text() if limit.cancelled_caught else None

    async def _sample(
        self,
        runs: list[list[date]],
        consume: Callable[[Page], None],
        stored: dict[date, int],
        outcome: Outcome,
        max_sessions: int,
        progress: Progress | None,
    ) -> Outcome:
        """A first page of every missing day, at a place in the day that rotates from day to day, then the
        rest of the allowance spread over the days (see module doc)."""
        missing = [d for run in runs for d in run]
        budget = math.ceil(max_sessions / self.size)  # pages; the allowance bounds the requests among them
        guess = max(0, (outcome.total or 0) - sum(stored.values())) / len(missing)
        affordable = min(budget, self.allowance.left + len(self._days_at_hand(missing)))
        probed = _spread(missing, affordable) if affordable < len(missing) else missing
        infos = {d: _Day(d) for d in missing}
        read = 0

        def take(page: SessionsPage, day: _Day, grid: int) -> None:
            nonlocal read
            total = _total(page)
            day.total = total if total is not None else day.total
            if not len(page) and not page.dropped:  # past the day's end: it told the total, nothing else
                return
            index = len(self._clusters)
            self._clusters.append(len(page))
            self._days.append((day.day - self.scope.window.start).days)
            read += len(page)
            day.read.add(grid)
            day.clusters.append(index)
            day.places.append(grid * self.size / total if total else 0.0)
            day.whole = grid == 0 and total is not None and len(page) + page.dropped >= total
            consume(Page(page.frame, page.dropped, index))

        firsts: dict[date, int] = {}

        def taking(wave: list[date]) -> Callable[[SessionsPage, int], None]:
            return lambda page, i: take(page, infos[wave[i]], firsts[wave[i]])

        # Every other day first, its size guessed from the window's total; then the days between, each
        # guessed from its neighbours' exact totals (busy days come in runs: a sale, a campaign).
        for wave in (probed[::2], probed[1::2]):
            for d in wave:
                near = [i.total for n in (-1, 1) if (i := infos.get(d + timedelta(days=n))) and i.total is not None]
                firsts[d] = self._first_page(d, sum(near) / len(near) if near else guess)
            with anyio.CancelScope(deadline=self.deadline):
                await self._gather(
                    [self.scope.day(d) for d in wave],
                    [self.size * firsts[d] for d in wave],
                    taking(wave),
                )
        for d in probed:
            if infos[d].total is not None:
                self._remember_first(d, firsts[d])
        picks = self._picks(infos, budget - len(probed))
        scopes = [self.scope.day(d) for d, _ in picks]
        offsets = [self.size * page for _, page in picks]
        with anyio.CancelScope(deadline=self.deadline):
            await self._gather(scopes, offsets, lambda page, i: take(page, infos[picks[i][0]], picks[i][1]))
        if progress is not None:
            await progress(read, outcome.total, f"{read:,} sessions read")

        known = sum(i.total for i in infos.values() if i.total is not None) + sum(stored.values())
        outcome.total = max(outcome.total or 0, known)  # the days' totals are newer than the runs' if they differ
        days = [infos[d] for d in missing]
        outcome.design = self._design(days, stored, outcome.total, read)
        if outcome.design is None:
            outcome.partial_reason = (
                self._deadline_text()
                if anyio.current_time() >= self.deadline
                else _too_few(days, len(stored), self.scope.window.days, read + sum(stored.values()))
            )
        return outcome

    def _picks(self, infos: dict[date, _Day], most: int) -> list[tuple[date, int]]:
        """The pages beyond the days' first to read: as many as the allowance pays for, pages already in
        the cache being free; a day still without a page gets one first, the rest go in proportion to each
        day's unread pages. Each day's pages are taken in a fixed low-discrepancy order, so a larger plan
        extends a smaller one (and asking again reads the same, cached, pages)."""
        orders = {
            d: [p for p in _spread_order(math.ceil(i.total / self.size), self._seed(d)) if p not in i.read]
            for d, i in infos.items()
            if i.total and not i.whole
        }
        orders = {d: order for d, order in orders.items() if order}
        lacking = [d for d in orders if not infos[d].clusters]

        def plan(n: int) -> list[tuple[date, int]]:
            """The days without a page first, then round by round (every day's next pick, then the one
            after, …): read in this order, a plan cut short by the budget or the deadline still covers every
            day it can."""
            first = _spread(lacking, n)
            counts = _allocate({d: len(order) - (d in first) for d, order in orders.items()}, n - len(first))
            rounds = max(counts.values(), default=0)
            rest = [(d, orders[d][r + (d in first)]) for r in range(rounds) for d in orders if r < counts.get(d, 0)]
            return [(d, orders[d][0]) for d in first] + rest

        def cost(picked: list[tuple[date, int]]) -> int:
            return sum(not self._cached(self.scope.day(d), self.size * page) for d, page in picked)

        lo, hi = 0, min(most, sum(len(order) for order in orders.values()))  # the largest plan the allowance pays
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cost(plan(mid)) <= self.allowance.left:
                lo = mid
            else:
                hi = mid - 1
        return plan(lo)

    def _design(self, days: list[_Day], stored: dict[date, int], total: int, read: int) -> Design | None:
        """Every day with pages read is a stratum; a day without joins the one before it (the first ones,
        the one after). A lone one-page stratum joins its neighbour: one-page strata are measured against
        each other (see analytics.estimate). None when no honest margin can be given: fewer than half of
        the window's days have a page read (or are stored), or no stratum has a spread to measure."""
        unknown = [d for d in days if d.total is None]
        known_total = sum(d.total for d in days if d.total is not None) + sum(stored.values())
        share = max(0, total - known_total) / len(unknown) if unknown else 0.0
        if 2 * (_covered(days) + len(stored)) < self.scope.window.days:
            return None
        strata: list[tuple[int, int, list[int]]] = []  # (population, pages, clusters)
        waiting = (0, 0)  # days before the first stratum: they join it
        for d in days:
            if d.whole:
                continue
            population = round(share) if d.total is None else d.total
            pages = math.ceil(population / self.size)
            if d.clusters:
                strata.append((population + waiting[0], pages + waiting[1], list(d.clusters)))
                waiting = (0, 0)
            elif strata:
                last = strata[-1]
                strata[-1] = (last[0] + population, last[1] + pages, last[2])
            else:
                waiting = (waiting[0] + population, waiting[1] + pages)
        if waiting[0] and not strata:
            return None
        lone = [i for i, (_, _, members) in enumerate(strata) if len(members) == 1]
        if len(lone) == 1 and len(strata) > 1:
            i = lone[0]
            j = i - 1 if i > 0 else i + 1
            a, b = strata[min(i, j)], strata[max(i, j)]
            strata[min(i, j) : max(i, j) + 1] = [(a[0] + b[0], a[1] + b[1], a[2] + b[2])]
        if strata and sum(len(members) for _, _, members in strata) < 2:
            return None
        clusters: list[int | None] = [None] * len(self._clusters)
        for g, (_, _, members) in enumerate(strata):
            for i in members:
                clusters[i] = g
        window_days = [self.scope.window.start + timedelta(days=i) for i in range(self.scope.window.days)]
        infos = {d.day: d for d in days}
        # A read of only the days at hand (`_at_hand`) leaves the other days without an entry.
        day_totals = tuple(
            stored[day] if day in stored else infos[day].total if day in infos else None for day in window_days
        )
        return Design(
            total=total,
            read=read + sum(stored.values()),
            days=self.scope.window.days,
            groups=tuple(Group(population, max(pages, len(members))) for population, pages, members in strata),
            clusters=tuple(zip(self._clusters, clusters, strict=True)),
            day_totals=day_totals,
            day_of=tuple(self._days),
            places=tuple(_places(days, len(self._clusters))),
            whole=tuple(day in stored or (day in infos and infos[day].whole) for day in window_days),
            unasked=share,
        )

    # -- list_sessions' pager ------------------------------------------------------------------------

    async def pages_from(self, offset: int) -> AsyncIterator[tuple[int, SessionsPage]]:
        """Window pages from the one holding `offset` on, while the allowance and the deadline last."""
        start = offset - offset % self.size  # aligned with the summaries' pages, so they come from the cache
        while True:
            page = await self._page(self.scope, start)
            if page is None:
                return
            yield start, page
            if not len(page) or not has_more_after(page, start, self.size):
                return
            start += self.size

    # -- background fill -----------------------------------------------------------------------------

    async def fill(self) -> int:
        """Read and store every closed day of the window the store lacks, one day at a time, leaving
        FILL_RESERVE of the budget to interactive calls, and the days another replica is fetching to it.
        Returns the days stored."""
        if self.store is None:
            return 0
        done = 0
        window = self.scope.window
        for day in (window.start + timedelta(days=i) for i in range(window.days)):
            if not self._closed(day) or await self._stored(day) is not None:
                continue
            stored: dict[date, int] = {}
            claim = await self._try_claim([day], FILL_CLAIM, stored, lambda _: None)
            if claim is None:
                continue  # another replica is fetching it
            try:
                if day not in stored:  # (another replica stored it meanwhile)
                    done += await self._fill_day(day)
            finally:
                await self._release([day], claim)
        return done

    async def _fill_day(self, day: date) -> int:
        """Read the closed day `day` whole and store it: 1 once stored."""
        import polars as pl

        assert self.store is not None
        frames: list[pl.DataFrame] = []
        offset, total = 0, None
        while True:
            await self._spare_budget()
            page = await self._fetch(self.scope.day(day), offset)
            frames.append(page.frame)
            total = total if total is not None else _total(page)
            if page.dropped or total is None or offset + self.size >= total:
                break
            offset += self.size
        sessions = pl.concat(frames)
        if total is None or not sessions.height == total == sessions.get_column("id").n_unique():
            return 0  # not read whole (a day still changing, unreadable items): fetched again next time
        return int(await anyio.to_thread.run_sync(self.store.put, self._day_key(day), sessions, total))

    async def _spare_budget(self) -> None:
        reserve = math.ceil(self.settings.rate_limit * FILL_RESERVE)
        budget = self.client.budget(self.key)
        # Polled: the budget frees up as time passes and as other processes' requests age, not on an event.
        while budget.available(0.0) <= reserve:  # noqa: ASYNC110
            await anyio.sleep(1.0)

    # -- pages -----------------------------------------------------------------------------------------

    async def _gather(
        self, scopes: Sequence[Scope], offsets: Sequence[int], on_page: Callable[[SessionsPage, int], None]
    ) -> list[_Got | None]:
        """Fetch pages with bounded concurrency, handing each to `on_page(page, i)` as it arrives (and
        keeping only what it said of its size: a window's sessions are never held); a page that fails, or
        is not granted by the allowance, stays None."""
        results: list[_Got | None] = [None] * len(scopes)
        queue = iter(range(len(scopes)))

        async def worker() -> None:
            for i in queue:
                page = await self._page(scopes[i], offsets[i])
                if page is not None:
                    results[i] = _Got(len(page) + page.dropped, _total(page))
                    on_page(page, i)

        with own_errors():  # a 401 met by one worker is the caller's error, not an ExceptionGroup
            async with anyio.create_task_group() as group:
                for _ in range(min(CONCURRENCY, len(scopes))):
                    group.start_soon(worker)
        return results

    def _cached(self, scope: Scope, offset: int) -> bool:
        return self.client.cached(
            self.key,
            scope.website_id,
            scope.window,
            limit=self.size,
            offset=offset,
            target_signal_id=scope.target_signal_id,
            is_hybrid=scope.is_hybrid,
        )

    async def _page(self, scope: Scope, offset: int) -> SessionsPage | None:
        """One page within the allowance (cached pages are free); a 429 is waited out while the deadline
        allows. A page that asking again later could bring (the budget or the time spent, Hardal failing or
        unreachable through the retries) is None, and `stopped` says why; any other error is raised."""
        if not self._cached(scope, offset) and not self.allowance.take():
            self.stopped = self._spent()
            return None
        while True:
            try:
                return await self._fetch(scope, offset)
            except RateLimitError as exc:
                wait = exc.retry_after if exc.retry_after is not None else 60.0
                if too_late(wait) is not None:  # as a slot's wait is (`starting_by`)
                    self.stopped = exc
                    return None
                log.info("Hardal's rate limit: waiting %.0f s for the window to reopen", wait)
                await anyio.sleep(wait)
            except (ServerError, NetworkError) as exc:
                self.stopped = exc
                return None

    async def _fetch(self, scope: Scope, offset: int) -> SessionsPage:
        return await fetch_page(self.client, self.key, scope, offset, self.size)

    # -- the store -------------------------------------------------------------------------------------

    def _day_key(self, day: date) -> DayKey:
        s = self.scope
        tz = s.window.timezone
        return DayKey(self._fingerprint, s.website_id, s.target_signal_id, s.is_hybrid, tz, day)

    def _closed(self, day: date) -> bool:
        return self.store is not None and self.store.closed(self.scope.window.timezone, day)

    async def _stored(self, day: date) -> pl.DataFrame | None:
        if self.store is None or not self._closed(day):
            return None
        return await anyio.to_thread.run_sync(self.store.get, self._day_key(day))

    async def _store_days(self, run: list[date], sessions: pl.DataFrame) -> None:
        """Split the sessions of `run`, read whole in this call (checked against the run's exact total), into
        its local days and store the closed ones, each with its part of that total. Only the run's days:
        the window's other days were not read here (a stored day written back from this read would be
        emptied). Nothing is stored when a session's start is unknown or falls outside the run (the split
        would not be Hardal's)."""
        import polars as pl

        if self.store is None:
            return
        if sessions.get_column("offset").null_count():  # a start unknown, or sent without its offset
            return
        local = pl.col("started").dt.convert_time_zone(self.scope.window.timezone).dt.date()
        days = sessions.select(local.alias("day")).get_column("day")
        if not days.is_in(run).all():
            return
        for day in run:
            kept = sessions.filter(days == day)
            if self._closed(day):
                await anyio.to_thread.run_sync(self.store.put, self._day_key(day), kept, kept.height)

    def _seed(self, day: date) -> float:
        """Where in its day a day's pages start, in [0, 1): a start fixed per site, moved on by the plastic
        ratio from one day to the next (a low-discrepancy sequence), so that the days' first pages together
        cover every hour of the day, and the same question reads the same (cached) pages."""
        digest = hashlib.blake2b(self.scope.website_id.encode(), digest_size=8).digest()
        return (int.from_bytes(digest, "big") / 2**64 + day.toordinal() * _PLASTIC) % 1.0

    def _first_page(self, day: date, guess: float) -> int:
        """The page of the day's grid read first: the one an earlier read of the day took, or the one at the
        day's start (`_seed`) in a day of `guess` sessions. A guess too large can point past the day's end:
        that page still tells the day's exact total."""
        known = self.client.first_pages.get(self._day_key(day))
        return known if known is not None else math.floor(self._seed(day) * math.ceil(guess / self.size))

    def _first_at_hand(self, day: date) -> bool:
        page = self.client.first_pages.get(self._day_key(day))
        return page is not None and self._cached(self.scope.day(day), self.size * page)

    def _remember_first(self, day: date, page: int) -> None:
        firsts = self.client.first_pages
        firsts[self._day_key(day)] = page
        if len(firsts) > MAX_FIRST_PAGES:
            del firsts[next(iter(firsts))]

    def _spent(self) -> RateLimitError:
        """Why the allowance refused a request: Hardal's own 429 pausing the key, else the budget spent."""
        budget = self.client.budget(self.key)
        if (paused := budget.held()) > 0:
            return paused_error(paused)
        wait = next((s for s in range(1, 61) if budget.available(float(s)) > 0), 60)
        return RateLimitError(
            f"the key's rate budget (HARDAL_RATE_LIMIT={self.settings.rate_limit} a minute) is spent by earlier "
            f"questions; try again in about {wait} s",
            retry_after=float(wait),
        )

    def _why(self) -> str:
        return self.stopped.message if self.stopped is not None else "a page failed"

    def _deadline_text(self) -> str:
        return (
            f"the {self.settings.tool_timeout:g} s time limit (HARDAL_TOOL_TIMEOUT) was reached; "
            "narrow the window or ask again (pages already read are cached)"
        )

    def _failure(self, timed_out: bool) -> UpstreamError:
        """Why a read got none of the pages it needed: the error that stopped it, itself (its class and
        status kept: a 429's `retry_after`), else the time limit, else the budget (no request was left)."""
        if self.stopped is not None:
            return self.stopped
        if timed_out:
            return timed_out_error(self.settings)
        return self._spent()


def timed_out_error(settings: Settings) -> NetworkError:
    """The error of a tool call that HARDAL_TOOL_TIMEOUT ended before Hardal answered anything."""
    return NetworkError(
        f"Hardal did not answer within the {settings.tool_timeout:g} s time limit (HARDAL_TOOL_TIMEOUT). "
        "Try again, or narrow the time window."
    )


@contextmanager
def starting_by(deadline: float) -> Iterator[None]:
    """Within it, a request whose rate-limit slot would free up too late to start SAFETY_SECONDS before
    `deadline` (anyio's clock) is refused at once with when to try again (`budget.too_late`), instead of
    waiting for the slot and then for the deadline."""
    token = START_BY.set(time.time() + deadline - anyio.current_time() - SAFETY_SECONDS)
    try:
        yield
    finally:
        START_BY.reset(token)


async def fetch_page(client: HardalClient, key: SecretStr, scope: Scope, offset: int, limit: int) -> SessionsPage:
    """One sessions page of `scope` (personal data already masked by the client, as it arrived)."""
    return await client.sessions(
        key,
        scope.website_id,
        scope.window,
        limit=limit,
        offset=offset,
        target_signal_id=scope.target_signal_id,
        is_hybrid=scope.is_hybrid,
    )


def _runs(days: list[date]) -> list[list[date]]:
    """Consecutive days, grouped."""
    runs: list[list[date]] = []
    for d in days:
        if runs and runs[-1][-1] + timedelta(days=1) == d:
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


def _total(page: SessionsPage) -> int | None:
    return page.pagination.total if page.pagination is not None else None


def has_more_after(page: SessionsPage, offset: int, limit: int) -> bool:
    """Reference §6.6: trust the counts over `hasMore` when they disagree; a short page ends the list."""
    if len(page) < limit and not page.dropped:
        return False
    pagination = page.pagination
    if pagination is not None and pagination.total is not None:
        return offset + len(page) + page.dropped < pagination.total
    if pagination is not None and pagination.has_more is not None:
        return pagination.has_more
    return True


def _spread(items: list[date], n: int) -> list[date]:
    """`n` of `items`, evenly spaced (all of them when `n` is no fewer)."""
    if n >= len(items):
        return list(items)
    if n <= 0:
        return []
    return [items[math.floor((i + 0.5) * len(items) / n)] for i in range(n)]


def _allocate(pages: dict[date, int], budget: int) -> dict[date, int]:
    """Share `budget` pages out in proportion to each day's unread pages (largest remainders), capped."""
    whole = sum(pages.values())
    if budget <= 0 or whole == 0:
        return {}
    if budget >= whole:
        return dict(pages)
    exact = {d: budget * n / whole for d, n in pages.items()}
    plan = {d: min(pages[d], math.floor(x)) for d, x in exact.items()}
    left = budget - sum(plan.values())
    for d in sorted(pages, key=lambda d: (plan[d] - exact[d], d)):
        if left <= 0:
            break
        if plan[d] < pages[d]:
            plan[d] += 1
            left -= 1
    return {d: n for d, n in plan.items() if n}


def _spread_order(pages: int, start: float) -> list[int]:
    """Pages 0..`pages` - 1 in an order whose every prefix is spread evenly over them (the golden-ratio
    sequence from a start fixed per day), so that a plan of any size covers the whole day."""
    order: list[int] = []
    seen: set[int] = set()
    i = 0
    while len(order) < pages:
        page = math.floor(((start + i * _GOLDEN) % 1.0) * pages)
        i += 1
        if page not in seen:
            seen.add(page)
            order.append(page)
        if i > 64 * pages:  # the sequence is dense; this only guards the arithmetic
            order += [p for p in range(pages) if p not in seen]
            break
    return order


_GOLDEN = (math.sqrt(5) - 1) / 2
_PLASTIC = 0.7548776662466927  # 1 / the plastic number: with _GOLDEN within a day, a 2-D low-discrepancy pair
MAX_FIRST_PAGES = 100_000  # days whose first page a client remembers (`HardalClient.first_pages`)


def _covered(days: list[_Day]) -> int:
    """Days whose sessions a sample stands for: a page read, or none to read."""
    return sum(bool(d.clusters) or d.total == 0 for d in days)


def _too_few(days: list[_Day], stored: int, of: int, read: int) -> str:
    """Why a sample gave no estimate: what was read, and what to do."""
    covered = _covered(days) + stored
    return (
        f"the rate budget let only {covered} of the window's {of} days be read ({read:,} sessions), too few "
        "to estimate the window's figures with an honest margin, so the figures are of the sessions read only; "
        "ask again in a minute (the budget refills) or narrow the window"
    )


def _places(days: list[_Day], clusters: int) -> list[float]:
    """Each cluster's place in its day, by cluster index."""
    places = [0.0] * clusters
    for d in days:
        for i, place in zip(d.clusters, d.places, strict=True):
            places[i] = place
    return places
