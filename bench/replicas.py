"""Replicas sharing one Redis (issue 16): three `hardal-mcp --transport http --stateless` processes, one
`redis-server`, the sandbox at 100 requests a minute, and 30 MCP clients spread round-robin over the
replicas asking mixed questions about one closed 30-day window (and the 30 days before it) for two minutes.

    python -m bench.replicas [--seconds 120] [--clients 30] [--replicas 3] [--kill-redis-at S] [--record]

Every process is real and separate; only loopback is used. The sandbox records every request it is sent
(`bench.sandbox_proc`), and the report is read from that record and from the clients' answers:

* 429s: statuses the sandbox answered (goal 0);
* every call answered, without an error, within HARDAL_TOOL_TIMEOUT (+ 5 s for the transport);
* requests in any sliding 60 s window (goal ≤ the limit) and in the first minute, while every client is
  waiting on data nobody has stored yet (goal ≥ 90% of the limit, where more than that was needed);
* closed days fetched more than once: a closed day that day reads (pages of 1,000, the planner's and the
  background fill's) covered under two different windows, or the same day read (window, page) sent twice
  (goal 0). list_sessions' own pages (20 sessions: a browse, not a day read) are counted apart;
* the answers that say they are complete and exact, compared with a single replica's answers to the same
  questions, asked afterwards with a store of its own and no Redis (goal: all identical).

`--kill-redis-at S` kills Redis S seconds into the run and starts it again (empty) 10 s later: the fault
test. Redis's password and URL must not appear in any replica's stderr.

Exit status: 0 when every goal holds, 1 when one is missed, 2 when the run could not be made."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from bench.procs import Child, SandboxProcess, free_port
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID

REDIS_PASSWORD = "bench-redis-pw-5e1d"
REFERENCE_KEY = "reference-key"
PAGE_SIZE = 1000  # HARDAL_PAGE_SIZE's default: the pages days are read by
TOOL_TIMEOUT = 50.0  # HARDAL_TOOL_TIMEOUT's default: the deadline each call is held to
CLOSED_AFTER_DAYS = 3  # the window ends this many days before today: closed for the store (48 h)
FUNNELS = (["/", "/products/*", "/cart", "/checkout*"], ["/products/*", "/cart"], ["/search*", "/products/*"])
PATH_PAGES = (None, "/cart", "/products/*", "/checkout")
SEGMENTS = (
    None,
    {"device": "mobile"},
    {"country": ["Turkey", "Germany"]},
    {"bounced": False},
    {"visited": "/cart"},
    {"min_pageviews": 3},
)


class Redis:
    """A redis-server child on a free loopback port, with a password and nothing written to disk."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.binary, *args, "--requirepass", REDIS_PASSWORD],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def replica(
    sandbox: SandboxProcess, store: Path, rate_limit: int, redis_url: str | None, key: str = DEMO_API_KEY
) -> Child:
    env = {
        "HARDAL_API_KEY": key,
        "HARDAL_WEBSITE_ID": DEMO_WEBSITE_ID,
        "HARDAL_BASE_URL": sandbox.url,
        "HARDAL_TIMEZONE": "UTC",
        "HARDAL_RATE_LIMIT": str(rate_limit),
        "HARDAL_TOOL_TIMEOUT": str(TOOL_TIMEOUT),
        "HARDAL_STORE": str(store),
        "HARDAL_REDIS_URL": redis_url or "",
    }
    port = free_port()
    return Child(["-m", "hardal_mcp", "--transport", "http", "--stateless", "--port", str(port)], port, env=env)


@dataclass(frozen=True)
class Question:
    tool: str
    arguments: dict[str, Any]
    exact: bool  # its answer depends only on the closed window: comparable with a single replica's

    @property
    def key(self) -> str:
        return json.dumps([self.tool, self.arguments], sort_keys=True)


@dataclass
class Answer:
    question: Question
    replica: int
    started: float
    seconds: float
    error: str | None
    text: str = ""
    complete: bool = False


@dataclass
class Report:
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    late: int = 0
    slowest: float = 0.0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    busiest_minute: int = 0
    first_minute: int = 0
    needed: int = 0  # distinct requests the run made: the first minute could not use more
    repeated_requests: int = 0  # day reads (pages of PAGE_SIZE) of closed days sent more than once
    browse_repeats: int = 0  # list_sessions pages of closed windows sent more than once (by several replicas)
    days_under_two_windows: int = 0
    compared: int = 0
    different: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)  # the single replica's answer → the replicas', per difference
    leaked: list[str] = field(default_factory=list)
    redis_warnings: int = 0

    def goals(self, limit: int) -> list[tuple[str, str, bool]]:
        floor = min(0.9 * limit, self.needed)
        return [
            ("429 answers", f"{self.statuses.get(429, 0)}", self.statuses.get(429, 0) == 0),
            ("calls without an answer (error)", f"{len(self.errors)} of {self.calls}", not self.errors),
            (f"calls past their deadline ({TOOL_TIMEOUT:.0f} s + 5 s)", f"{self.late}", self.late == 0),
            (f"requests in any 60 s (≤ {limit})", f"{self.busiest_minute}", self.busiest_minute <= limit),
            (
                f"requests in the first minute (≥ {floor:.0f})",
                f"{self.first_minute}",
                self.first_minute >= floor,
            ),
            ("day reads of closed days sent twice", f"{self.repeated_requests}", self.repeated_requests == 0),
            ("closed days read under two windows", f"{self.days_under_two_windows}", self.days_under_two_windows == 0),
            (
                "complete answers equal to a single replica's",
                f"{self.compared - len(self.different)} of {self.compared}",
                not self.different and self.compared > 0,
            ),
            ("Redis URL or password in a replica's stderr", f"{len(self.leaked)}", not self.leaked),
        ]


def window(today: date) -> tuple[date, date]:
    end = today - timedelta(days=CLOSED_AFTER_DAYS)
    return end - timedelta(days=29), end


def questions(rng: random.Random, start: date, end: date, ids: list[str]) -> Question:
    days = {"start_date": start.isoformat(), "end_date": end.isoformat(), "timezone": "UTC"}
    pick = rng.random()
    if pick < 0.35:
        args: dict[str, Any] = dict(days)
        segment = rng.choice(SEGMENTS)
        if segment is not None:
            args["segment"] = segment
        if rng.random() < 0.3:
            args["compare"] = "previous_period"
        return Question("summarize_sessions", args, exact=True)
    if pick < 0.5:
        return Question("analyze_funnel", {**days, "steps": rng.choice(FUNNELS)}, exact=True)
    if pick < 0.65:
        page = rng.choice(PATH_PAGES)
        return Question("analyze_paths", {**days, **({"page": page} if page else {})}, exact=True)
    if pick < 0.85 or not ids:
        offset = rng.choice((0, 20, 40, 1000, 5000))
        return Question("list_sessions", {**days, "limit": 20, "offset": offset}, exact=True)
    return Question("get_session_activity", {"session_id": rng.choice(ids)}, exact=False)


async def client_loop(
    index: int, url: str, until: float, start: date, end: date, answers: list[Answer], ids: list[str]
) -> None:
    rng = random.Random(index)
    timeout = httpx2.Timeout(30.0, read=TOOL_TIMEOUT + 30)
    async with (
        httpx2.AsyncClient(timeout=timeout) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        while time.time() < until:
            question = questions(rng, start, end, ids)
            began = time.time()
            try:
                result = await client.call_tool(question.tool, question.arguments)
            except Exception as exc:  # every failure is a finding, reported
                answers.append(Answer(question, index, began, time.time() - began, f"{type(exc).__name__}: {exc}"))
                continue
            text = "".join(getattr(c, "text", "") for c in result.content)
            structured = result.structured_content or {}
            coverage = structured.get("coverage") or {}
            complete = bool(coverage.get("complete")) and coverage.get("sample") is None
            error = text[:300] if result.is_error else None
            answers.append(Answer(question, index, began, time.time() - began, error, text, complete))
            if question.tool == "list_sessions" and not result.is_error:
                ids.extend(row["id"] for row in structured.get("sessions", [])[:5] if "id" in row)
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # a model reads the answer before it asks again


async def drive(urls: list[str], clients: int, seconds: float, start: date, end: date) -> tuple[list[Answer], float]:
    answers: list[Answer] = []
    ids: list[str] = []
    began = time.time()
    until = began + seconds
    await asyncio.gather(
        *(client_loop(i, urls[i % len(urls)], until, start, end, answers, ids) for i in range(clients))
    )
    for answer in answers:
        answer.replica = answer.replica % len(urls)
    return answers, began


async def reference(url: str, asked: list[Question]) -> dict[str, str]:
    """A single replica's answers to the questions asked (each once, in turn): the ground truth."""
    out: dict[str, str] = {}
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=TOOL_TIMEOUT + 30)) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        for question in asked:
            result = await client.call_tool(question.tool, question.arguments)
            structured = result.structured_content or {}
            coverage = structured.get("coverage") or {}
            if not result.is_error and coverage.get("complete") and coverage.get("sample") is None:
                out[question.key] = "".join(getattr(c, "text", "") for c in result.content)
    return out


def read_traffic(sandbox: SandboxProcess) -> list[tuple[float, int, str, str]]:
    response = httpx2.get(f"{sandbox.url}/_bench/traffic/{DEMO_WEBSITE_ID}", timeout=30)
    response.raise_for_status()
    return [(h[0], h[1], h[2], h[3]) for h in response.json()["hits"]]


def analyse(report: Report, hits: list[tuple[float, int, str, str]], began: float, today: date) -> None:
    hits = sorted(hits)
    times = [h[0] for h in hits]
    report.requests = len(hits)
    report.statuses = Counter(h[1] for h in hits)
    report.busiest_minute = max((sum(1 for t in times if s <= t < s + 60) for s in times), default=0)
    report.first_minute = sum(1 for t in times if began <= t < began + 60)
    targets = Counter(h[3] for h in hits if h[1] == 200)
    report.needed = len(targets)
    closed_last = today - timedelta(days=2)  # days before this one are closed (48 h after their end)
    windows_of: defaultdict[date, set[tuple[str, str]]] = defaultdict(set)
    for target, count in targets.items():
        q = {k: v[0] for k, v in parse_qs(target.partition("?")[2]).items()}
        if "startDate" not in q:
            continue  # a session's activity
        first, last = date.fromisoformat(q["startDate"]), date.fromisoformat(q.get("endDate", q["startDate"]))
        if last >= closed_last:
            continue
        if int(q.get("limit", PAGE_SIZE)) < PAGE_SIZE:  # list_sessions' own page: a browse, not a day read
            report.browse_repeats += count - 1
            continue
        report.repeated_requests += count - 1
        day = first
        while day <= last:
            windows_of[day].add((q["startDate"], q.get("endDate", "")))
            day += timedelta(days=1)
    report.days_under_two_windows = sum(1 for spans in windows_of.values() if len(spans) > 1)


def run(
    *, seconds: float, clients: int, replicas: int, rate_limit: int, sessions_per_day: int, kill_redis_at: float | None
) -> Report:
    today = datetime.now(UTC).date()
    start, end = window(today)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="hardal-replicas-") as tmp:
        redis = Redis()
        redis.start()
        # The single replica of the ground truth uses a key of its own: the same data, a rate limit of its own.
        sandbox = SandboxProcess(sessions_per_day, rate_limit=rate_limit, more_keys=(REFERENCE_KEY,))
        children: list[Child] = []
        try:
            children = [
                replica(sandbox, Path(tmp, f"r{i}", "store.sqlite3"), rate_limit, redis.url) for i in range(replicas)
            ]
            urls = [c.url for c in children]

            async def with_fault() -> tuple[list[Answer], float]:
                driving = asyncio.ensure_future(drive(urls, clients, seconds, start, end))
                if kill_redis_at is not None:
                    await asyncio.sleep(kill_redis_at)
                    redis.kill()
                    await asyncio.sleep(10)
                    redis.start()
                return await driving

            answers, began = asyncio.run(with_fault())
            time.sleep(1)
            hits = read_traffic(sandbox)
            for child in children:
                stderr = child.stderr()
                if REDIS_PASSWORD in stderr or redis.url in stderr:
                    report.leaked.append(child.url)
                report.redis_warnings += stderr.count("does not answer")
        finally:
            for child in children:
                child.stop()
            redis.kill()
        report.calls = len(answers)
        report.errors = [f"{a.question.tool}: {a.error}" for a in answers if a.error]
        report.late = sum(1 for a in answers if a.seconds > TOOL_TIMEOUT + 5)
        report.slowest = max((a.seconds for a in answers), default=0.0)
        analyse(report, hits, began, today)
        # The ground truth: one replica, no Redis, a store of its own, the same questions.
        comparable = [a for a in answers if a.complete and a.question.exact and not a.error]
        distinct = list({a.question.key: a.question for a in comparable}.values())
        try:
            with replica(sandbox, Path(tmp, "single", "store.sqlite3"), rate_limit, None, REFERENCE_KEY) as single:
                truth = asyncio.run(reference(single.url, distinct))
        finally:
            sandbox.stop()
        for a in comparable:
            if a.question.key in truth:
                report.compared += 1
                if truth[a.question.key] != a.text:
                    report.different.append(a.question.key)
                    lines = difflib.unified_diff(truth[a.question.key].splitlines(), a.text.splitlines(), lineterm="")
                    report.diffs.append("\n".join(list(lines)[:40]))
    return report


def table(report: Report, args: argparse.Namespace) -> str:
    lines = [
        f"## {args.replicas} replicas on one Redis: {args.clients} clients for {args.seconds:.0f} s, sandbox at "
        f"{args.rate_limit} requests/min, {args.sessions_per_day:,} sessions/day"
        + (f", Redis killed at {args.kill_redis_at:.0f} s and started again 10 s later" if args.kill_redis_at else ""),
        "",
        "| figure | value | goal met |",
        "|---|---|---|",
        f"| calls | {report.calls} (slowest {report.slowest:.1f} s) | |",
        f"| requests to Hardal | {report.requests} ({report.needed} distinct) | |",
        f"| list_sessions pages of closed days asked again by another replica | {report.browse_repeats} | |",
    ]
    for name, value, ok in report.goals(args.rate_limit):
        lines.append(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
    if args.kill_redis_at:
        spent = sum(1 for e in report.errors if "rate budget" in e)
        lines.append(f"| of the errors, a spent budget with when to ask again | {spent} | |")
        lines.append(f"| replicas' lines saying Redis does not answer | {report.redis_warnings} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--rate-limit", type=int, default=100)
    parser.add_argument("--sessions-per-day", type=int, default=1000)
    parser.add_argument("--kill-redis-at", type=float, default=None, help="seconds into the run")
    args = parser.parse_args()
    try:
        report = run(
            seconds=args.seconds,
            clients=args.clients,
            replicas=args.replicas,
            rate_limit=args.rate_limit,
            sessions_per_day=args.sessions_per_day,
            kill_redis_at=args.kill_redis_at,
        )
    except (RuntimeError, OSError) as exc:
        print(f"could not run: {exc}", file=sys.stderr)
        sys.exit(2)
    print(table(report, args))
    for line in report.errors[:5] + report.different[:5]:
        print(f"- {line}")
    sys.exit(0 if all(ok for _, _, ok in report.goals(args.rate_limit)) else 1)


if __name__ == "__main__":
    main()
