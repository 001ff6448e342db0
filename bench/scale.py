"""Issue 9 at scale: a busy site behind Hardal's rate limit, every figure beside what the previous code did,
measured in the same run.

    python -m bench.scale [--quick]        (also the last section of `python -m bench`)

The sandbox serves 15,000 sessions a day (`SandboxConfig(sessions_per_day=15000)`, seed 0, website `demo`)
and, like Hardal, allows 100 requests a minute per key (429 past it). Every sandbox of a run has its clock
pinned to the moment the run began, so today's sessions stop growing and every reader sees the same data.
Each scenario gets its own rate-limited sandbox process and new hardal-mcp server processes (stdio, as a
host runs them), so no budget, response cache or store carries over unless the scenario says so.

* **Truth**: every session of the days involved, read day by day from an unlimited sandbox with the same
  data, redacted as the server redacts, and digested by `hardal_mcp.analytics.Digest`.
* **Old behaviour**: what the code before the planner did: the newest 20,000 sessions of a window (window
  pages at offsets 0..19,000, four in flight) digested the same way; for a comparison, two such slices;
  and for the shared budget, two processes each keeping its own limiter (HARDAL_STORE=off).

Goals (issue 9): (1) last30days answers within HARDAL_TOOL_TIMEOUT (50 s) with the exact window total and
day counts, every top-10 share within ±1.5 pts of the truth and no day with traffic shown as 0;
(2) compare=previous_period: every total's change within its stated margin of the true change; (3) closed
days after a restart: 0 upstream requests and ≤ 2 s; (4) two processes with one key and one store, at
once: no 429 and both answer."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
from mcp.client import Client
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent
from pydantic import SecretStr

from bench import stdio
from bench.procs import SandboxProcess
from bench.report import Row, Section, document, num
from hardal_mcp.analytics import Digest, Segment, Summary
from hardal_mcp.analytics import compare as compare_periods
from hardal_mcp.analytics.estimate import canon
from hardal_mcp.analytics.schema import MAX_TOP
from hardal_mcp.config import Settings
from hardal_mcp.frames import SessionsPage, parse_sessions_page
from hardal_mcp.keys import SECRET_FILENAME, Fingerprints, load_secret
from hardal_mcp.params import Window
from hardal_mcp.privacy import redact_frame
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID
from hardal_mcp.store import DayKey, DayStore

SPD = 15_000  # sessions per day, on average
RATE = 100  # requests per minute per key: Hardal's documented limit, the sandbox's and the server's
TZ = "UTC"
PAGE = 1000
OLD_PAGES = 20  # the previous code: max_sessions 20,000 by default, at 1,000 a page
OLD_CONCURRENCY = 4
TOOL_TIMEOUT = float(Settings.model_fields["tool_timeout"].default)  # 50 s
SHARE_GOAL = 1.5  # points
STORE_WALL_GOAL = 2.0  # seconds
CLOSED_DAYS = 28
SEGMENT = {"device": "Mobile"}
CALL_BOUND = 240.0  # seconds any one tool call may take before the benchmark gives up on it
FILL_BOUND = 300.0  # seconds the background fill of the store may take
TRUTH_BOUND = 900.0
TRUTH_CONCURRENCY = 6
# Shown values and rates are rounded (shares to 0.1 pt, rates to 0.1 or 0.01): a difference this small is
# rounding, not error, when it is held against a margin.
ROUNDING = {"bounce_pct": 0.1, "pages_per_session": 0.01, "duration_mean": 0.1}

TITLE = f"At scale: {SPD:,} sessions a day behind {RATE} requests a minute (issue 9)"
INTRO = (
    "Each figure beside the previous code's behaviour, measured in the same run against the same sandbox data; "
    "the truth is every session of the window. Old behaviour: the newest 20,000 sessions of a window (a "
    "comparison: two such slices); for the store, the same call without one; for two processes, each with its "
    "own limiter."
)

_started = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - _started:6.1f} s] scale: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Days:
    first: date
    last: date

    @property
    def count(self) -> int:
        return (self.last - self.first).days + 1

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last

    def each(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.count)]

    def window(self) -> Window:
        return Window("custom", self.first, self.last, TZ)

    def args(self, **extra: Any) -> dict[str, Any]:
        return {"start_date": self.first.isoformat(), "end_date": self.last.isoformat(), "timezone": TZ, **extra}

    def __str__(self) -> str:
        return f"{self.first} → {self.last}"


@dataclass(frozen=True)
class Windows:
    today: date
    current: Days  # last30days
    previous: Days  # the 30 days before
    week: Days  # last7days
    closed: Days  # CLOSED_DAYS days, every one closed (its local end at least 48 h ago)

    @classmethod
    def of(cls, today: date) -> Windows:
        current = Days(today - timedelta(days=29), today)
        # A day is stored once its local end is 48 h old: the newest closed day is three days back.
        closed_end = today - timedelta(days=3)
        return cls(
            today=today,
            current=current,
            previous=Days(current.first - timedelta(days=30), current.first - timedelta(days=1)),
            week=Days(today - timedelta(days=6), today),
            closed=Days(closed_end - timedelta(days=CLOSED_DAYS - 1), closed_end),
        )


# ------------------------------------------------------------------------------------------------ truth


@dataclass
class Truth:
    """One window digested from every one of its sessions, its lists shown MAX_TOP deep."""

    days: Days
    summary: Summary
    series: list[int]
    _lists: dict[str, tuple[dict[str, int], int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for b in [*self.summary.breakdowns, *self.summary.pages]:
            counts: dict[str, int] = {}
            for e in b.top:
                counts[canon(b.key, e.v)] = counts.get(canon(b.key, e.v), 0) + e.n
            self._lists[b.key] = (counts, sum(e.n for e in b.top) + b.other)

    @property
    def total(self) -> int:
        return self.summary.totals.sessions

    def share(self, key: str, shown: str) -> float | None:
        """The true share (%) of a value as an answer shows it (enumerations case-folded); None when the
        truth does not show it among its MAX_TOP (then its share is at most the last one shown)."""
        counts, whole = self._lists.get(key, ({}, 0))
        count = counts.get(canon(key, shown))
        return None if count is None or not whole else 100.0 * count / whole


class Api:
    """The Sessions API as hardal-mcp's client asks it, parsed and redacted as the server does."""

    def __init__(self, url: str) -> None:
        self.http = httpx2.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {DEMO_API_KEY}"}, timeout=httpx2.Timeout(120.0)
        )
        self.requests = 0

    async def page(self, days: Days, offset: int) -> SessionsPage:
        params = {
            "timeframe": "custom",
            "startDate": days.first.isoformat(),
            "endDate": days.last.isoformat(),
            "timezone": TZ,
            "limit": str(PAGE),
            "offset": str(offset),
            "targetSignalId": DEMO_WEBSITE_ID,
            "isHybrid": "false",
        }
        self.requests += 1
        response = await self.http.get(f"/api/websites/{DEMO_WEBSITE_ID}/sessions", params=params)
        response.raise_for_status()
        page = parse_sessions_page(response.content)
        page.replace(redact_frame(page.frame))  # HARDAL_REDACT_PII is on by default: the server masks too
        return page

    async def aclose(self) -> None:
        await self.http.aclose()


def total_of(page: SessionsPage) -> int:
    if page.pagination is None or page.pagination.total is None:
        raise RuntimeError("the sandbox sent a page without a total")
    return page.pagination.total


@dataclass
class TruthRun:
    windows: dict[str, Truth]
    sessions: int  # distinct sessions read
    requests: int
    wall: float


async def read_truth(url: str, targets: dict[str, tuple[Days, Segment | None]]) -> TruthRun:
    """Every session of every day any target covers, each day read whole (first page, then the rest),
    handed to the digest of every target window containing it."""
    digests = {name: (days, Digest(days.window(), top=MAX_TOP, segment=seg)) for name, (days, seg) in targets.items()}
    all_days = sorted({d for days, _ in targets.values() for d in days.each()})
    api = Api(url)
    gate = asyncio.Semaphore(TRUTH_CONCURRENCY)
    totals: dict[date, int] = {}
    read: dict[date, int] = {}

    async def fetch(day: date, offset: int) -> tuple[date, SessionsPage]:
        async with gate:
            return day, await api.page(Days(day, day), offset)

    def feed(day: date, page: SessionsPage) -> None:
        read[day] = read.get(day, 0) + len(page)
        for days, digest in digests.values():
            if day in days:
                digest.add(page.frame, page.dropped)

    async def whole_day(day: date) -> None:
        _, first = await fetch(day, 0)
        totals[day] = total_of(first)
        feed(day, first)
        for pending in asyncio.as_completed([fetch(day, o) for o in range(PAGE, totals[day], PAGE)]):
            feed(*await pending)

    started = time.perf_counter()
    try:
        async with asyncio.timeout(TRUTH_BOUND):
            await asyncio.gather(*(whole_day(d) for d in all_days))
    finally:
        await api.aclose()
    wrong = {d: (read.get(d), totals[d]) for d in all_days if read.get(d) != totals[d]}
    if wrong:
        raise RuntimeError(f"truth: days read short of their totals: {wrong}")
    windows = {}
    for name, (days, digest) in digests.items():
        summary = digest.summary(website_id=DEMO_WEBSITE_ID, total=sum(totals[d] for d in days.each()))
        windows[name] = Truth(days, summary, list(summary.series.counts))
    return TruthRun(windows, sum(totals.values()), api.requests, time.perf_counter() - started)


# -------------------------------------------------------------------------------------------- old behaviour


@dataclass
class Old:
    summary: dict[str, Any]
    model: Summary
    wall: float
    requests: int


async def old_behaviour(url: str, days: Days) -> Old:
    """The previous code's answer: the newest OLD_PAGES pages of the window, OLD_CONCURRENCY in flight."""
    api = Api(url)
    digest = Digest(days.window(), top=10)
    gate = asyncio.Semaphore(OLD_CONCURRENCY)
    total: int | None = None

    async def fetch(offset: int) -> None:
        nonlocal total
        async with gate:
            page = await api.page(days, offset)
        total = total_of(page)
        digest.add(page.frame, page.dropped)

    started = time.perf_counter()
    try:
        async with asyncio.timeout(CALL_BOUND):
            await fetch(0)  # the first page tells the total, then the rest
            assert total is not None
            await asyncio.gather(*(fetch(o) for o in range(PAGE, min(total, OLD_PAGES * PAGE), PAGE)))
    finally:
        await api.aclose()
    wall = time.perf_counter() - started
    model = digest.summary(website_id=DEMO_WEBSITE_ID, total=total)
    return Old(model.model_dump(mode="json"), model, wall, api.requests)


# ---------------------------------------------------------------------------------------------- servers


def server_env(sandbox_url: str, store: str, **extra: str) -> dict[str, str]:
    return {
        "HARDAL_BASE_URL": sandbox_url,
        "HARDAL_API_KEY": DEMO_API_KEY,
        "HARDAL_WEBSITE_ID": DEMO_WEBSITE_ID,
        "HARDAL_TIMEZONE": TZ,
        "HARDAL_RATE_LIMIT": str(RATE),
        "HARDAL_STORE": store,
        **extra,
    }


@dataclass
class Answer:
    wall: float  # seconds of the tools/call, from the request to the answer
    data: dict[str, Any]  # structured content
    error: str | None

    @property
    def coverage(self) -> dict[str, Any]:
        return dict(self.data.get("coverage") or {})


class Server:
    """A hardal-mcp server process over stdio, as a host runs it; its stderr kept aside."""

    def __init__(self, client: Client, log: IO[str]) -> None:
        self.client = client
        self.log = log

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    async def ask(self, arguments: dict[str, Any], tool: str = "summarize_sessions") -> Answer:
        started = time.perf_counter()
        result: CallToolResult | None = None
        with anyio.move_on_after(CALL_BOUND):
            result = await self.client.call_tool(tool, arguments, read_timeout_seconds=CALL_BOUND)
        wall = time.perf_counter() - started
        if result is None:
            return Answer(wall, {}, f"no answer within {CALL_BOUND:g} s (the benchmark's bound)")
        error = None
        if result.is_error:
            error = " ".join(b.text for b in result.content if isinstance(b, TextContent))[:500]
        return Answer(wall, dict(result.structured_content or {}), error)


@asynccontextmanager
async def server(env: dict[str, str]) -> AsyncIterator[Server]:
    with tempfile.TemporaryFile("w+") as log:
        try:
            async with Client(stdio_client(stdio.hardal_params(env), errlog=log)) as client:
                yield Server(client, log)
        except Exception as exc:
            log.seek(0)
            raise RuntimeError(f"hardal-mcp server failed ({exc!r}); its stderr:\n{log.read()[-4000:]}") from exc


@asynccontextmanager
async def limited_sandbox(now: datetime) -> AsyncIterator[SandboxProcess]:
    sandbox = SandboxProcess(SPD, rate_limit=RATE, now=now)
    try:
        yield sandbox
    finally:
        sandbox.stop()


async def traffic(sandbox: SandboxProcess) -> tuple[int, int]:
    """(requests, of which 429) the sandbox has seen."""
    hits = await sandbox.hits()
    return len(hits), sum(status == 429 for _, status in hits)


# --------------------------------------------------------------------------------------------- accuracy


@dataclass
class Accuracy:
    total: int | None
    truth_total: int
    days: int
    exact_days: int  # days whose count equals the truth
    zero_days: int  # days with traffic shown as 0
    estimated_series: bool
    shares: int  # shares compared
    worst: float  # largest |shown - truth|, points
    worst_at: str
    within_goal: int  # shares within ±SHARE_GOAL
    with_margin: int  # shares that state a margin
    within_margin: int  # ... and are within it (plus rounding)
    sampled_from: int | None  # sessions read, when estimated
    margin_max: float | None  # the answer's own largest stated margin
    unmatched: list[str]  # values shown that the truth does not show among its MAX_TOP (not compared)

    def total_text(self) -> str:
        return "—" if self.total is None else num(self.total)

    def days_text(self) -> str:
        estimated = " (estimated series)" if self.estimated_series else ""
        return f"{self.exact_days} of {self.days}{estimated}"


def shares_of(answer: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for b in [*answer.get("breakdowns", []), *answer.get("pages", [])]:
        if not b.get("id_like"):
            for entry in b.get("top", []):
                yield str(b["key"]), entry


def accuracy(answer: dict[str, Any], truth: Truth) -> Accuracy:
    series = answer.get("series") or {}
    counts: list[int] = list(series.get("counts") or [])
    pairs = list(zip(counts, truth.series, strict=False))
    errors: list[tuple[float, str, float | None]] = []
    unmatched: list[str] = []
    for key, entry in shares_of(answer):
        true = truth.share(key, str(entry["v"]))
        if true is None:
            unmatched.append(f"{key} {entry['v']}")
            continue
        moe = entry.get("moe")
        errors.append((abs(float(entry["pct"]) - true), f"{key} {entry['v']}", None if moe is None else float(moe)))
    worst = max(errors, default=(0.0, "—", None))
    margins = [(e, m) for e, _, m in errors if m is not None]
    sample = (answer.get("coverage") or {}).get("sample")
    return Accuracy(
        total=(answer.get("totals") or {}).get("sessions"),
        truth_total=truth.total,
        days=len(truth.series),
        exact_days=sum(a == b for a, b in pairs) if len(counts) == len(truth.series) else 0,
        zero_days=sum(a == 0 and b > 0 for a, b in pairs),
        estimated_series=bool(series.get("estimated")),
        shares=len(errors),
        worst=worst[0],
        worst_at=worst[1],
        within_goal=sum(e <= SHARE_GOAL + 1e-9 for e, _, _ in errors),
        with_margin=len(margins),
        within_margin=sum(e <= m + 0.05 + 1e-9 for e, m in margins),
        sampled_from=None if not sample else int(sample["read"]),
        margin_max=None if not sample or sample.get("moe") is None else float(sample["moe"]),
        unmatched=unmatched,
    )


@dataclass
class DeltaCheck:
    name: str
    shown: float | None
    moe: float | None
    truth: float | None
    old: float | None
    noise: bool = False  # the answer marks the change as within its margin
    now: float | None = None  # the answer's figures for the two periods, and the truth's
    before: float | None = None
    true_now: float | None = None
    true_before: float | None = None

    @property
    def error(self) -> float | None:
        return None if self.shown is None or self.truth is None else self.shown - self.truth

    @property
    def inside(self) -> bool | None:
        if self.error is None or self.moe is None:
            return None
        return abs(self.error) <= self.moe + ROUNDING.get(self.name, 1.0) + 1e-9


def deltas(answer: dict[str, Any], truth: dict[str, Any], old: dict[str, Any]) -> list[DeltaCheck]:
    def by_name(comparison: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {str(c["name"]): c for c in comparison.get("totals", [])}

    ours, true, before = by_name(answer), by_name(truth), by_name(old)
    return [
        DeltaCheck(
            name,
            c.get("delta"),
            c.get("moe"),
            true.get(name, {}).get("delta"),
            before.get(name, {}).get("delta"),
            bool(c.get("noise")),
            c.get("now"),
            c.get("before"),
            true.get(name, {}).get("now"),
            true.get(name, {}).get("before"),
        )
        for name, c in ours.items()
    ]


# ---------------------------------------------------------------------------------------------- results


@dataclass
class FirstAnswer:
    label: str
    arguments: dict[str, Any]
    answer: Answer
    requests: int  # upstream requests of this call
    rejected: int
    accuracy: Accuracy
    truth: str  # which truth window
    after: str | None = None  # asked in the same server right after this question


@dataclass
class Comparison:
    label: str
    answer: Answer
    requests: int
    rejected: int
    checks: list[DeltaCheck]
    accuracy: Accuracy  # of the current period, as the comparison's answer shows it


@dataclass
class Restart:
    label: str
    answer: Answer
    requests: int
    accuracy: Accuracy
    spawn_to_answer: float


@dataclass
class Pair:
    walls: list[float]
    errors: list[str | None]
    partial: list[bool]
    read: list[int]  # sessions each answer read
    requests: int
    rejected: int


@dataclass
class Results:
    windows: Windows
    now: datetime
    truth: TruthRun
    old: dict[str, Old] = field(default_factory=dict)
    first: list[FirstAnswer] = field(default_factory=list)
    compare: list[Comparison] = field(default_factory=list)
    fill_wall: float = math.nan
    fill_days: int = 0
    fill_first: Answer | None = None
    restarts: list[Restart] = field(default_factory=list)
    no_store: list[Restart] = field(default_factory=list)
    shared: Pair | None = None
    local: Pair | None = None
    store_cost: StoreCost | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- scenes


def new_store(tmp: Path) -> str:
    """A store file of its own (and so a budget file of its own) in a new directory under `tmp`."""
    return str(Path(tempfile.mkdtemp(dir=tmp)) / "store.sqlite3")


async def first_answers(
    now: datetime, asks: list[tuple[str, dict[str, Any], str]], truth: TruthRun, tmp: Path
) -> list[FirstAnswer]:
    """A new server with an empty store and a new rate-limited sandbox; the questions asked one after the
    other (the first is the first answer; the others show what a follow-up question meets)."""
    out: list[FirstAnswer] = []
    async with limited_sandbox(now) as sandbox, server(server_env(sandbox.url, new_store(tmp))) as srv:
        for label, arguments, name in asks:
            before = await traffic(sandbox)
            answer = await srv.ask(arguments)
            after = await traffic(sandbox)
            out.append(
                FirstAnswer(
                    label,
                    arguments,
                    answer,
                    after[0] - before[0],
                    after[1] - before[1],
                    accuracy(answer.data, truth.windows[name]),
                    name,
                    out[-1].label if out else None,
                )
            )
    return out


async def comparison(now: datetime, label: str, arguments: dict[str, Any], results: Results, tmp: Path) -> Comparison:
    truth = results.truth.windows
    true = compare_periods(truth["current"].summary, truth["previous"].summary).model_dump(mode="json")
    old = compare_periods(results.old["current"].model, results.old["previous"].model).model_dump(mode="json")
    async with limited_sandbox(now) as sandbox, server(server_env(sandbox.url, new_store(tmp))) as srv:
        answer = await srv.ask(arguments)
        requests, rejected = await traffic(sandbox)
    checks = deltas(answer.data.get("comparison") or {}, true, old)
    return Comparison(label, answer, requests, rejected, checks, accuracy(answer.data, truth["current"]))


async def fill_store(url: str, store: Path, days: Days, results: Results) -> None:
    """Ask the closed window once against the unlimited sandbox, then let the server's background fill
    store every closed day; wait (bounded) until the store holds all of them."""
    env = server_env(url, str(store), HARDAL_RATE_LIMIT="100000")
    started = time.perf_counter()
    async with server(env) as srv:
        results.fill_first = await srv.ask(days.args())
        deadline = time.monotonic() + FILL_BOUND
        stored = 0
        while time.monotonic() < deadline:
            stored = stored_days(store, days)
            if stored >= days.count:
                break
            await asyncio.sleep(0.5)
        results.fill_wall = time.perf_counter() - started
        results.fill_days = stored
        if stored < days.count:
            results.notes.append(
                f"The background fill stored {stored} of {days.count} days within {FILL_BOUND:g} s; "
                f"server stderr: {srv.stderr()[-600:]!r}"
            )


@dataclass
class StoreCost:
    sessions: int
    get: float  # seconds to read every day of the window from the store (decoded into frames)
    digest: float  # seconds to digest them


def store_cost(path: Path, days: Days) -> StoreCost:
    """What answering from the store costs, in this process: every day read back, then digested."""
    store = DayStore(path)
    fingerprint = Fingerprints(load_secret(path.parent / SECRET_FILENAME)).of(SecretStr(DEMO_API_KEY))
    try:
        started = time.perf_counter()
        got = [store.get(DayKey(fingerprint, DEMO_WEBSITE_ID, None, False, TZ, d)) for d in days.each()]
        get = time.perf_counter() - started
    finally:
        store.close()
    digest = Digest(days.window(), top=10)
    started = time.perf_counter()
    for sessions in got:
        if sessions is not None:
            digest.add(sessions)
    digest.summary(website_id=DEMO_WEBSITE_ID, total=None)
    return StoreCost(sum(0 if g is None else g.height for g in got), get, time.perf_counter() - started)


def stored_days(path: Path, days: Days) -> int:
    if not path.exists():
        return 0
    store = DayStore(path)
    try:
        status = store.status()
    finally:
        store.close()
    return sum(s.days for s in status.sites if s.website_id == DEMO_WEBSITE_ID)


async def restart(now: datetime, label: str, arguments: dict[str, Any], truth: Truth, store: str) -> Restart:
    """A new server process (the restart) against a new rate-limited sandbox, asking one question."""
    async with limited_sandbox(now) as sandbox:
        spawned = time.perf_counter()
        async with server(server_env(sandbox.url, store)) as srv:
            answer = await srv.ask(arguments)
            spawn_to_answer = time.perf_counter() - spawned
            requests, _ = await traffic(sandbox)
    return Restart(label, answer, requests, accuracy(answer.data, truth), spawn_to_answer)


async def two_at_once(now: datetime, store: str, questions: list[dict[str, Any]]) -> Pair:
    """Two server processes with the same key (and `store`), spawned together, each asking its question as
    soon as both are up, against one rate-limited sandbox."""
    both_up = asyncio.Barrier(len(questions))
    answers: list[Answer | None] = [None] * len(questions)

    async def one(i: int, env: dict[str, str]) -> None:
        async with server(env) as srv:
            await both_up.wait()
            answers[i] = await srv.ask(questions[i])

    async with limited_sandbox(now) as sandbox, asyncio.timeout(CALL_BOUND + 60):
        env = server_env(sandbox.url, store)
        await asyncio.gather(*(one(i, env) for i in range(len(questions))))
        requests, rejected = await traffic(sandbox)
    done = [a for a in answers if a is not None]
    return Pair(
        walls=[a.wall for a in done],
        errors=[a.error for a in done],
        partial=[not a.coverage.get("complete", False) and not a.coverage.get("sample") for a in done],
        read=[int(a.coverage.get("scanned") or 0) for a in done],
        requests=requests,
        rejected=rejected,
    )


# ------------------------------------------------------------------------------------------------ plan


async def measure(quick: bool = False) -> Results:
    """Every scene in turn (nothing timed overlaps). `quick` leaves out the comparison (and the previous
    period's truth, half the truth's cost) and the segment question after the restart."""
    now = datetime.now(UTC).replace(microsecond=0)
    windows = Windows.of(now.date())
    tmp_dir = tempfile.TemporaryDirectory(prefix="hardal-scale-")
    tmp = Path(tmp_dir.name)
    base: dict[str, Any] = {"timezone": TZ}
    say(f"sandbox at {SPD:,} sessions/day, clock pinned at {now:%Y-%m-%d %H:%M:%S} UTC; rate limit {RATE}/min")
    try:
        # -- the truth, the old behaviour, and the store filled (all from the unlimited sandbox) -----------
        targets: dict[str, tuple[Days, Segment | None]] = {
            "current": (windows.current, None),
            "week": (windows.week, None),
            "closed": (windows.closed, None),
        }
        if not quick:
            targets["previous"] = (windows.previous, None)
            targets["closed_segment"] = (windows.closed, Segment.parse(SEGMENT))
        first_day = min(days.first for days, _ in targets.values())
        unlimited = SandboxProcess(SPD, now=now)
        try:
            say(f"truth: every session of {first_day} → {windows.today}, read day by day from an unlimited sandbox")
            truth = await read_truth(unlimited.url, targets)
            say(f"truth: {truth.sessions:,} sessions, {truth.requests} requests, {truth.wall:.1f} s")
            results = Results(windows, now, truth)

            filled = tmp / "filled" / "store.sqlite3"
            say(f"store: ask {windows.closed} once (unlimited sandbox), wait for the background fill of its days")
            await fill_store(unlimited.url, filled, windows.closed, results)
            say(f"store: {results.fill_days} days stored in {results.fill_wall:.1f} s")
        finally:
            unlimited.stop()

        say("old behaviour: the newest 20,000 sessions of each window, from a new rate-limited sandbox")
        async with limited_sandbox(now) as sandbox:
            for name in ("current", "week", "previous"):
                if name in targets:  # 20 requests each
                    results.old[name] = await old_behaviour(sandbox.url, targets[name][0])

        # -- 1. first answers, and a follow-up question in the same server ---------------------------------
        asks = [
            ("last30days", {"timeframe": "last30days", **base}, "current"),
            ("last7days", {"timeframe": "last7days", **base}, "week"),
        ]
        say(f"{', then '.join(a[0] for a in asks)} (new server, empty store, new sandbox at {RATE}/min)")
        results.first += await first_answers(now, asks, truth, tmp)

        # -- 2. compare ------------------------------------------------------------------------------------
        if not quick:
            say("compare: last30days vs the previous 30 days (new server, empty store, new sandbox)")
            versus = {"timeframe": "last30days", "compare": "previous_period", **base}
            results.compare.append(await comparison(now, "last30days vs previous 30 days", versus, results, tmp))

        # -- 3. closed days after a restart ------------------------------------------------------------------
        questions = [("closed days", windows.closed.args(), "closed")]
        if not quick:
            questions.append(
                ("closed days, segment device=Mobile", windows.closed.args(segment=SEGMENT), "closed_segment")
            )
        for label, arguments, name in questions:
            say(f"restart: {label}, store filled")
            results.restarts.append(await restart(now, label, arguments, truth.windows[name], str(filled)))
            say(f"restart: {label}, no store")
            results.no_store.append(await restart(now, label, arguments, truth.windows[name], "off"))
        results.store_cost = await asyncio.to_thread(store_cost, filled, windows.closed)

        # -- 4. two processes, one key -----------------------------------------------------------------------
        pair = [{"timeframe": "last30days", **base}, windows.previous.args()]
        say("two processes at once, one key, one store directory")
        results.shared = await two_at_once(now, new_store(tmp), pair)
        say("two processes at once, one key, HARDAL_STORE=off (each its own limiter)")
        results.local = await two_at_once(now, "off", pair)
    finally:
        tmp_dir.cleanup()
    if datetime.now(UTC).date() != now.date():
        results.notes.append("The run crossed midnight UTC: the server's today and the sandbox's differ; rerun.")
    return results


# ------------------------------------------------------------------------------------------------ table


def rows_and_notes(r: Results) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    w = r.windows
    truth = r.truth.windows
    # 1. first answers
    for f in r.first:
        a = f.accuracy
        name = f.truth
        o = accuracy(r.old[name].summary, truth[name])
        old_wall = r.old[name].wall
        head = f"{f.label}: first answer" if f.after is None else f"{f.label}, asked next (same server)"
        if f.answer.error:
            rows.append(Row(f"{head}: error", f.answer.error[:120], "—", "—", "an answer", False))
            continue
        rows += [
            Row(
                f"{head}: wall (s)",
                num(f.answer.wall, 2),
                f"{num(old_wall, 2)} (20 pages)",
                goal=f"≤ {TOOL_TIMEOUT:g}",
                met=f.answer.wall <= TOOL_TIMEOUT,
            ),
            Row(
                "… upstream requests / 429s",
                f"{f.requests} / {f.rejected}",
                f"{r.old[name].requests} / 0",
                goal=f"≤ {RATE} / 0",
                met=f.requests <= RATE and f.rejected == 0,
            ),
            Row(
                f"… window total (truth {num(a.truth_total)})",
                a.total_text(),
                o.total_text(),
                goal="exact",
                met=a.total == a.truth_total,
            ),
            Row(
                "… days whose count is exact / days with traffic shown as 0",
                f"{a.days_text()} / {a.zero_days}",
                f"{o.days_text()} / {o.zero_days}",
                goal=f"{a.days} of {a.days} / 0",
                met=a.exact_days == a.days and a.zero_days == 0,
            ),
            Row(
                f"… top-10 shares ({a.shares}): largest error, pts · within ±{SHARE_GOAL} · within stated margin",
                f"{a.worst:.2f} ({a.worst_at[:32]}) · {a.within_goal} · {a.within_margin} of {a.with_margin}",
                f"{o.worst:.2f} ({o.worst_at[:32]}) · {o.within_goal} of {o.shares} · no margins",
                goal=f"≤ {SHARE_GOAL} · all · ≈95%",
                met=a.worst <= SHARE_GOAL,
            ),
        ]

    # 2. comparisons
    for c in r.compare:
        head = f"compare {c.label}"
        if c.answer.error:
            rows.append(Row(f"{head}: error", c.answer.error[:120], "—", "—", "an answer", False))
            continue
        sessions = next((d for d in c.checks if d.name == "sessions"), None)
        measured = [d for d in c.checks if d.inside is not None]
        unmeasured = [d.name for d in c.checks if d.inside is None and d.name != "sessions"]
        worst = max(measured, key=lambda d: abs(d.error or 0) / max(d.moe or 0, 1e-9), default=None)
        rows += [
            Row(
                f"{head}: wall (s) / requests / 429s",
                f"{num(c.answer.wall, 2)} / {c.requests} / {c.rejected}",
                "—",
                "—",
                f"≤ {TOOL_TIMEOUT:g} / ≤ {RATE} / 0",
                c.answer.wall <= TOOL_TIMEOUT and c.requests <= RATE and c.rejected == 0,
            ),
        ]
        if sessions is not None:
            rows.append(
                Row(
                    f"… sessions Δ (truth {fmt_delta(sessions.truth)})",
                    fmt_delta(sessions.shown),
                    fmt_delta(sessions.old),
                    "—",
                    "exact",
                    sessions.shown == sessions.truth,
                )
            )
        rows.append(
            Row(
                "… other totals' Δ within their stated margin of the true Δ",
                f"{sum(bool(d.inside) for d in measured)} of {len(measured)}"
                + (f" (worst {worst.name}: off {fmt_delta(worst.error)}, ± {worst.moe:g})" if worst else ""),
                old_deltas(c.checks),
                "—",
                "all",
                bool(measured) and all(d.inside for d in measured),
            )
        )
        flagged = [d for d in measured if not d.noise]
        rows.append(
            Row(
                "… changes the answer calls real (beyond their margin): Δ shown (true Δ)",
                ", ".join(f"{d.name} {fmt_delta(d.shown)} ({fmt_delta(d.truth)})" for d in flagged) or "none",
                "every change (no margins)",
                "—",
                "—",
            )
        )
        if unmeasured:
            r.notes.append(f"compare {c.label}: no margin stated for {', '.join(unmeasured)} (not checked).")

    # 3. restarts
    if r.restarts:
        rows.append(
            Row(
                f"store fill: closed days stored by the background fill (of {w.closed.count})",
                f"{r.fill_days} in {num(r.fill_wall, 1)} s",
                "—",
                "—",
                f"{w.closed.count}",
                r.fill_days >= w.closed.count,
            )
        )
    for i, s in enumerate(r.restarts):
        n = r.no_store[i] if i < len(r.no_store) else None
        head = f"after a restart, {s.label} ({w.closed.count} days, store filled)"
        if s.answer.error:
            rows.append(Row(f"{head}: error", s.answer.error[:120], "—", "—", "an answer", False))
            continue
        rows += [
            Row(
                f"{head}: upstream requests",
                num(s.requests),
                f"{n.requests} (no store)" if n else "—",
                "—",
                "0",
                s.requests == 0,
            ),
            Row(
                "… wall (s)",
                num(s.answer.wall, 2),
                f"{num(n.answer.wall, 2)} (no store)" if n else "—",
                "—",
                f"≤ {STORE_WALL_GOAL:g}",
                s.answer.wall <= STORE_WALL_GOAL,
            ),
            Row(
                "… total / exact days / largest share error (pts)",
                f"{s.accuracy.total_text()} / {s.accuracy.exact_days} of {s.accuracy.days} / {s.accuracy.worst:.2f}",
                (
                    f"{n.accuracy.total_text()} / {n.accuracy.exact_days} of {n.accuracy.days} / {n.accuracy.worst:.2f}"
                    if n and not n.answer.error
                    else "—"
                ),
                "—",
                f"{num(s.accuracy.truth_total)} / all / ≤ 0.05 (rounding)",
                s.accuracy.total == s.accuracy.truth_total
                and s.accuracy.exact_days == s.accuracy.days
                and s.accuracy.worst < 0.05 + 1e-9,
            ),
        ]

    # 4. two processes
    if r.shared is not None:
        p, q = r.shared, r.local
        rows += [
            Row(
                "two processes, one key, at once: HTTP 429s",
                num(p.rejected),
                f"{q.rejected} (HARDAL_STORE=off)" if q else "—",
                "—",
                "0",
                p.rejected == 0,
            ),
            Row(
                "… both answered (wall, sessions read)",
                pair_text(p),
                pair_text(q) if q else "—",
                "—",
                "both",
                all(e is None for e in p.errors) and len(p.walls) == 2 and not any(p.partial),
            ),
            Row(
                "… the slower answer, wall (s)",
                num(max(p.walls, default=math.nan), 1),
                num(max(q.walls, default=math.nan), 1) if q else "—",
                "—",
                f"≤ {TOOL_TIMEOUT:g}",
                max(p.walls, default=math.inf) <= TOOL_TIMEOUT,
            ),
        ]
    return rows, notes(r)


def fmt_delta(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+,.0f}" if float(value).is_integer() else f"{value:+,.2f}"


def fmt_value(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def old_deltas(checks: list[DeltaCheck]) -> str:
    """The old slices' changes of the rates (their counts are of 20,000 sessions each, not of the periods)."""
    rates = [d for d in checks if d.name in ROUNDING and d.old is not None]
    if not rates:
        return "—"
    return "no margins; " + ", ".join(f"{d.name} {fmt_delta(d.old)} ({fmt_delta(d.truth)})" for d in rates)


def pair_text(p: Pair) -> str:
    parts = []
    for wall, error, partial, read in zip(p.walls, p.errors, p.partial, p.read, strict=True):
        parts.append("error" if error else f"{wall:.1f} s, {read / 1000:.0f}k read" + (" partial" if partial else ""))
    return f"{'yes' if all(e is None for e in p.errors) else 'no'} ({' / '.join(parts)})"


def notes(r: Results) -> list[str]:
    w = r.windows
    t = r.truth
    out = [
        f"Scale (`bench/scale.py`): the sandbox at {SPD:,} sessions/day with its clock pinned at "
        f"{r.now:%Y-%m-%d %H:%M:%S} UTC, {RATE} requests/min per key (sliding 60 s, 429 past it); servers over "
        f"stdio with HARDAL_TIMEZONE={TZ}, HARDAL_RATE_LIMIT={RATE}, HARDAL_TOOL_TIMEOUT {TOOL_TIMEOUT:g} s "
        "(default), default arguments unless stated; every scene with a new rate-limited sandbox and new server "
        "processes. Windows: last30days "
        f"{w.current}, previous {w.previous}, last7days {w.week}, closed {w.closed} (its newest day ended more "
        "than 48 h ago, the store's rule).",
        f"Truth: every session of the 60 days, {num(t.sessions)} sessions in {t.requests} requests read day by "
        f"day from an unlimited sandbox (same seed, site and clock), redacted and digested: {num(t.wall, 1)} s "
        "(the sandbox generates and renders, this process parses and digests).",
        "Old behaviour: the previous code's reading, emulated: the newest 20,000 sessions of the window (pages at "
        "offsets 0..19,000, four in flight, from a new rate-limited sandbox) through the same Digest; a comparison "
        "compares two such slices. Its wall is the pages' download and digest in this process.",
        "Shares: every entry of every breakdown and page list the answer shows (country, device, browser, os, UTM "
        "and custom fields, landing, exit, viewed, path; id-like fields skipped) against the share of the same "
        "value among every session (the truth's lists shown 50 deep; enumerations case-folded). Within the margin "
        "means |shown − true| ≤ stated margin + 0.05 (the shown share is rounded to 0.1).",
    ]
    for f in r.first:
        a = f.accuracy
        if a.sampled_from is not None:
            out.append(
                f"{f.label}{'' if f.after is None else f' (after {f.after})'}: read {num(a.sampled_from)} of "
                f"{num(a.truth_total)} sessions with {f.requests} requests of its own; the answer states shares "
                f"±{a.margin_max} pts at most; "
                + (
                    "per-day counts equal to the truth."
                    if a.exact_days == a.days
                    else f"per-day counts shown: {f.answer.data.get('series', {}).get('counts')}; "
                    f"true: {r.truth.windows[f.truth].series}."
                )
            )
        if a.unmatched:
            out.append(f"{f.label}: not among the truth's top 50, not compared: {', '.join(a.unmatched)}.")
    for c in r.compare:
        parts = [
            f"{d.name} {fmt_delta(d.shown)}"
            + (f" ± {d.moe:g}" if d.moe is not None else "")
            + f" (true {fmt_delta(d.truth)}, old {fmt_delta(d.old)}"
            + (
                f"; shown {fmt_value(d.now)} vs {fmt_value(d.before)}, true {fmt_value(d.true_now)} vs "
                f"{fmt_value(d.true_before)})"
                if d.moe is not None
                else ")"
            )
            for d in c.checks
        ]
        out.append(f"compare {c.label}, Δ per total: " + "; ".join(parts) + ".")
    if r.restarts:
        out.append(
            f"Store: a server against the unlimited sandbox (HARDAL_RATE_LIMIT=100000) asked about {w.closed} once "
            f"(answer in {num(r.fill_first.wall, 1) if r.fill_first else '?'} s, sampled); its background fill then "
            f"stored the closed days one at a time ({r.fill_days} days, {num(r.fill_wall, 1)} s from the question). "
            "Then, for each question, a new server process with that store against a new rate-limited sandbox: "
            "the wall is the tools/call alone; spawn → answer: "
            + ", ".join(f"{s.label} {num(s.spawn_to_answer, 2)} s" for s in r.restarts)
            + ". No store: the same, HARDAL_STORE=off."
        )
    if r.store_cost is not None:
        cost = r.store_cost
        out.append(
            f"Where a store-served answer's time goes (this process, after the runs): reading the {w.closed.count} "
            f"days back from the store ({num(cost.sessions)} sessions, decoded) {num(cost.get, 2)} s; digesting "
            f"them {num(cost.digest, 2)} s ({num(cost.sessions / max(cost.get + cost.digest, 1e-9))} sessions/s)."
        )
    if r.shared is not None:
        out.append(
            "Two processes: spawned together, each asks as soon as both are up (last30days; the previous 30 days; "
            "each alone would spend the minute's budget) "
            f"against one sandbox at {RATE}/min; shared: one store directory (its budget file) for both, "
            f"{r.shared.requests} requests; old: HARDAL_STORE=off, each with its own limiter"
            + (f", {r.local.requests} requests." if r.local else ".")
        )
    return out + r.notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="without the comparison (and the previous period's truth) and the segment"
    )
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.quick))
    rows, scale_notes = rows_and_notes(results)
    print(
        document(
            "hardal-mcp benchmarks", ["`python -m bench.scale`"], [], [], [Section(TITLE, INTRO, rows, scale_notes)]
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
