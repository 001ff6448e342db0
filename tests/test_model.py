"""A model-based test of the whole read path (issue 13): Hypothesis drives random sequences of questions,
restarts, a second process, a spent budget and store faults against servers that share one day store, and
after every answer checks it against the sandbox's own data.

The servers are real (`build_server`, driven through `mcp.client.Client`, in memory); Hardal is the sandbox
behind a transport that counts requests and, while the budget is "spent", answers 429 as Hardal does. The
truth comes from the sandbox's data module, not from the product: the sessions that started in each local
day of the question's window, in its time zone.

What must hold after every step:
* an answer that says it is complete (no sample, nothing left out) is exact: sessions, bounces and every
  day's count equal the truth, for the window and, with compare, for the previous period;
* a sampled answer's total is exact (no segment), so are its days unless it says they are estimated, and
  each estimated figure with a margin lies within three margins of the truth (a 95% margin misses by
  more than 3x about once in 10,000);
* the sessions Hardal reported (`coverage.total`) are the window's, whatever the answer;
* an error only comes while Hardal refuses (a spent budget) and says why, never a traceback;
* every day the store keeps holds exactly the sessions of that day.

CI runs a bounded number of examples; `python -m bench.model` runs many more."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from mcp.client import Client

from hardal_mcp.sandbox import DEMO_WEBSITE_ID, SandboxConfig, create_app
from hardal_mcp.sandbox.data import Session as TrueSession
from hardal_mcp.sandbox.data import Site
from hardal_mcp.sandbox.query import Window as TrueWindow
from hardal_mcp.sandbox.query import resolve_window
from hardal_mcp.server import build_server
from hardal_mcp.store import DayKey, DayStore

from .conftest import make_settings

# The sandbox's clock is pinned at the start of the run, so its data never moves while the test runs; the
# product's own clock (which days are closed, which is today) is the real one, a few seconds later at most.
NOW = datetime.now(UTC).replace(microsecond=0)
SANDBOX = SandboxConfig(sessions_per_day=120, now=NOW)
SITE = Site(SANDBOX.seed, DEMO_WEBSITE_ID, SANDBOX.sessions_per_day)
ZONES = ("Europe/Istanbul", "America/Los_Angeles")
SEGMENTS: tuple[dict[str, Any] | None, ...] = (None, {"country": "Turkey"}, {"device": "Mobile"})
PAGE_SIZE = 50  # a day holds two or three pages: exact reads page, small max_sessions sample
MAX_EXAMPLES = int(os.environ.get("HARDAL_MODEL_EXAMPLES", "25"))
STEPS = int(os.environ.get("HARDAL_MODEL_STEPS", "14"))


# ------------------------------------------------------------------------------------------ the truth


def true_sessions(first: date, last: date, zone: str) -> list[TrueSession]:
    start, end = resolve_window("custom", first.isoformat(), last.isoformat(), ZoneInfo(zone), NOW)
    window = TrueWindow(SITE, start, end, NOW)
    return window.page(0, window.total)


def matches(s: TrueSession, segment: dict[str, Any] | None) -> bool:
    return segment is None or all(getattr(s, k) == v for k, v in segment.items())


@dataclass(frozen=True)
class Truth:
    sessions: int
    bounces: int
    days: list[int]  # sessions per local day of the window
    window_total: int  # every session of the window, whatever the segment (what Hardal reports)

    @classmethod
    def of(cls, first: date, last: date, zone: str, segment: dict[str, Any] | None) -> Truth:
        everything = true_sessions(first, last, zone)
        chosen = [s for s in everything if matches(s, segment)]
        tz = ZoneInfo(zone)
        days = [0] * ((last - first).days + 1)
        for s in chosen:
            days[(datetime.fromtimestamp(s.started, tz).date() - first).days] += 1
        bounces = sum(len(s.pages) <= 1 for s in chosen)
        return cls(len(chosen), bounces, days, len(everything))

    @property
    def bounce_pct(self) -> float:
        return 100.0 * self.bounces / self.sessions if self.sessions else 0.0


# ------------------------------------------------------------------------------------------- upstream


class Upstream(httpx2.AsyncBaseTransport):
    """The sandbox, counting requests; while `spent`, every request meets Hardal's 429 with Retry-After."""

    def __init__(self) -> None:
        self.inner = httpx2.ASGITransport(app=create_app(SANDBOX))
        self.spent = False
        self.requests = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        if self.spent:
            body = {"error": {"code": 429, "message": "Rate limit exceeded"}}
            return httpx2.Response(429, headers={"Retry-After": "60"}, json=body)
        return await self.inner.handle_async_request(request)


class Process:
    """One hardal-mcp server on the shared store: a restart is a new Process on the same file."""

    def __init__(self, portal: BlockingPortal, store: Path, upstream: Upstream) -> None:
        server = build_server(
            make_settings(store=str(store), page_size=PAGE_SIZE, rate_limit=100_000), transport=upstream
        )
        self._context = portal.wrap_async_context_manager(Client(server))
        self.client = self._context.__enter__()
        self.portal = portal

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        return self.portal.call(self.client.call_tool, tool, arguments)

    def stop(self) -> None:
        self._context.__exit__(None, None, None)


# ------------------------------------------------------------------------------------------ the model


class ReadPath(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="hardal-model-"))
        self.store = self.folder / "store.sqlite3"
        self._portal_context = start_blocking_portal()
        self.portal = self._portal_context.__enter__()
        self.upstream = Upstream()
        self.processes: list[Process | None] = [Process(self.portal, self.store, self.upstream), None]

    def teardown(self) -> None:
        for process in self.processes:
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        self._portal_context.__exit__(None, None, None)
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- questions --------------------------------------------------------------------------------------

    @rule(
        which=st.integers(0, 1),
        ends_ago=st.sampled_from([0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20]),
        length=st.integers(1, 9),
        zone=st.sampled_from(ZONES),
        segment=st.sampled_from(SEGMENTS),
        compare=st.booleans(),
        max_sessions=st.sampled_from([100_000, 100_000, 150]),
    )
    def ask(
        self,
        which: int,
        ends_ago: int,
        length: int,
        zone: str,
        segment: dict[str, Any] | None,
        compare: bool,
        max_sessions: int,
    ) -> None:
        process = self.processes[which] or self.processes[0]
        assert process is not None
        today = datetime.now(ZoneInfo(zone)).date()
        if today != NOW.astimezone(ZoneInfo(zone)).date():
            return  # midnight passed in this zone since the sandbox's clock was pinned: today differs
        last = today - timedelta(days=ends_ago)
        first = last - timedelta(days=length - 1)
        arguments: dict[str, Any] = {
            "start_date": first.isoformat(),
            "end_date": last.isoformat(),
            "timezone": zone,
            "max_sessions": max_sessions,
        }
        if segment is not None:
            arguments["segment"] = segment
        if compare:
            arguments["compare"] = "previous_period"
        result = process.call("summarize_sessions", arguments)
        text = " ".join(c.text for c in result.content if hasattr(c, "text"))
        if result.is_error:
            assert self.upstream.spent, f"an error while Hardal answers: {text}"
            assert "Error executing tool" not in text and "Traceback" not in text, text
            assert "rate" in text.lower() or "try again" in text.lower(), text
            return
        answer = result.structured_content
        assert answer is not None, text
        check_summary(answer, Truth.of(first, last, zone, segment), segment, text)
        comparison = answer.get("comparison")
        if compare and comparison is not None and comparison["complete"] and not comparison["estimated"]:
            before = Truth.of(first - timedelta(days=length), first - timedelta(days=1), zone, segment)
            figures = {f["name"]: f for f in comparison["totals"]}
            assert figures["sessions"]["before"] == before.sessions, (figures["sessions"], before, text)
            assert figures["bounces"]["before"] == before.bounces, (figures["bounces"], before, text)

    # -- processes --------------------------------------------------------------------------------------

    @rule(which=st.integers(0, 1))
    def restart(self, which: int) -> None:
        process = self.processes[which]
        if process is not None:
            process.stop()
        self.processes[which] = Process(self.portal, self.store, self.upstream)

    @precondition(lambda self: self.processes[1] is not None)
    @rule()
    def second_process_exits(self) -> None:
        process = self.processes[1]
        assert process is not None
        process.stop()
        self.processes[1] = None

    # -- the budget ---------------------------------------------------------------------------------------

    @precondition(lambda self: not self.upstream.spent)
    @rule()
    def budget_spent(self) -> None:
        self.upstream.spent = True

    @precondition(lambda self: self.upstream.spent)
    @rule()
    def a_minute_later(self) -> None:
        """Hardal's window reopens; the processes' holds (Retry-After: 60) have run out too: restart them."""
        self.upstream.spent = False
        for which, process in enumerate(self.processes):
            if process is not None:
                process.stop()
                self.processes[which] = Process(self.portal, self.store, self.upstream)

    # -- store faults -------------------------------------------------------------------------------------

    @rule(kind=st.sampled_from(["flip a body", "remove the file", "drop a day", "truncate the file"]))
    def store_fault(self, kind: str) -> None:
        if not self.store.exists():
            return
        if kind == "remove the file":
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.store}{suffix}")
            return
        # A file an earlier fault damaged cannot be damaged this way: the servers must cope with it as it is.
        with contextlib.suppress(sqlite3.DatabaseError):
            damage(self.store, kind)

    # -- what the store keeps ------------------------------------------------------------------------------

    @invariant()
    def every_stored_day_holds_that_day(self) -> None:
        """What the store would serve, and the total it keeps beside it, are the day's own sessions."""
        if not self.store.exists():
            return
        try:
            with closing(self.store) as conn:
                query = "SELECT fingerprint, website_id, target, hybrid, timezone, day, total FROM days"
                rows = conn.execute(query).fetchall()
        except sqlite3.DatabaseError:  # damaged by a fault: the answers (checked in `ask`) must not use it
            return
        with DayStore(self.store) as store:
            for fingerprint, website_id, target, hybrid, zone, day, total in rows:
                assert website_id == target == DEMO_WEBSITE_ID and not hybrid
                first = date.fromisoformat(day)
                truth = Truth.of(first, first, zone, None)
                assert total == truth.sessions, f"the store's total for {day} ({zone}) is {total}: {truth}"
                served = store.get(DayKey(fingerprint, website_id, None, False, zone, first))
                if served is not None:
                    assert len(served) == truth.sessions, f"{day} ({zone}) served {len(served)} sessions: {truth}"
                    assert set(served.get_column("id").to_list()) == {s.id for s in true_sessions(first, first, zone)}


def damage(store: Path, kind: str) -> None:
    if kind == "truncate the file":  # a crash or a full disk mid-write: damaged, still marked as ours
        with closing(store) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.truncate(store, max(4096, store.stat().st_size // 2))
        return
    with closing(store) as conn:
        row = conn.execute("SELECT rowid, body FROM days ORDER BY rowid LIMIT 1").fetchone()
        if row is None or not isinstance(row[1], bytes):
            return
        if kind == "flip a body":
            body = bytearray(row[1])
            body[len(body) // 2] ^= 0x01
            conn.execute("UPDATE days SET body = ? WHERE rowid = ?", (bytes(body), row[0]))
        else:
            conn.execute("DELETE FROM days WHERE rowid = ?", (row[0],))


@contextlib.contextmanager
def closing(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def check_summary(answer: dict[str, Any], truth: Truth, segment: dict[str, Any] | None, text: str) -> None:
    coverage, totals, series = answer["coverage"], answer["totals"], answer["series"]
    if coverage["total"] is not None:
        assert coverage["total"] == truth.window_total, ("Hardal's total", coverage, truth, text)
    sample = coverage["sample"]
    if sample is None and coverage["complete"]:
        assert totals["sessions"] == truth.sessions, ("a complete answer's sessions", totals, truth, text)
        assert totals["bounces"] == truth.bounces, ("a complete answer's bounces", totals, truth, text)
        if series["unit"] == "day":
            assert series["counts"] == truth.days, ("a complete answer's days", series, truth, text)
        return
    if sample is None:  # partial: a part of the window, said so
        assert coverage["note"], ("a partial answer says why", coverage, text)
        assert totals["sessions"] <= truth.sessions, (totals, truth, text)
        return
    assert sample["of"] == truth.window_total, ("a sample's population is exact", sample, truth, text)
    if segment is None:
        assert totals["sessions"] == truth.sessions, ("a sample's total is exact", totals, truth, text)
        if series["unit"] == "day" and not series["estimated"]:  # every day's own total was read
            assert series["counts"] == truth.days, ("a sample's days are exact", series, truth, text)
    margins = totals.get("moe") or {}
    if "bounce_pct" in margins and truth.sessions:
        miss = abs(totals["bounce_pct"] - truth.bounce_pct)
        assert miss <= 3 * margins["bounce_pct"] + 0.05, ("bounce rate beyond 3 margins", totals, truth, text)
    if "sessions" in margins:
        miss = abs(totals["sessions"] - truth.sessions)
        assert miss <= 3 * margins["sessions"] + 0.5, ("sessions beyond 3 margins", totals, truth, text)


# CI explores the same examples every run (derandomized); the bench sets HARDAL_MODEL_SEED to explore anew.
ReadPath.TestCase.settings = settings(
    max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, derandomize="HARDAL_MODEL_SEED" not in os.environ
)
TestReadPath = ReadPath.TestCase
