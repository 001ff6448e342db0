"""`python -m bench [--quick] [--record]`: every figure of hardal-mcp's performance and context economy,
measured against the sandbox over loopback, printed as one table and written to bench/results/latest.md
(`--record` also to bench/RESULTS.md, the committed copy).

Each figure is a median of several runs and every comparison is a ratio of two numbers measured in the
same run. Timed measurements never overlap each other; the only overlap is the rate-limit scan (which
spends a minute waiting on the limit) with the untimed work (token counts, warming the sandbox). The scale
section (`bench/scale.py`, issue 9: a busy site behind Hardal's rate limit) runs after the rest, alone."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from bench import context, engine, scale, scan, stdio
from bench.report import Row, Section, document, num, percent, times
from hardal_mcp.planner import CONCURRENCY as SCAN_CONCURRENCY
from hardal_mcp.render import BUDGET_CHARS
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig
from hardal_mcp.sandbox.data import Site, day_count

HERE = Path(__file__).resolve().parent
EPOCH = date(1970, 1, 1)

TARGET_SESSIONS = 100_000  # the big window
BIG_DAYS = 10
RATE_LIMIT = 30  # requests per minute, sandbox and server alike
RATE_PAGE_SIZE = 100
LISTING_LIMIT = 200


@dataclass(frozen=True)
class Plan:
    quick: bool
    scan_runs: int
    cold_runs: int
    calls: int
    listing_windows: int
    rate_runs: int


def plan(quick: bool) -> Plan:
    if quick:
        return Plan(True, scan_runs=3, cold_runs=3, calls=50, listing_windows=2, rate_runs=1)
    return Plan(False, scan_runs=5, cold_runs=7, calls=200, listing_windows=3, rate_runs=3)


_started = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - _started:6.1f} s] {message}", file=sys.stderr, flush=True)


def days(start: date, end: date) -> range:
    return range((start - EPOCH).days, (end - EPOCH).days + 1)


def sessions_in(spd: int, start: date, end: date) -> int:
    """Sessions of the demo site in a UTC window, from the sandbox's own (pure) volume function."""
    site = Site(SandboxConfig().seed, DEMO_WEBSITE_ID, spd)
    return sum(day_count(site, day) for day in days(start, end))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rate_window(today: date) -> tuple[date, date, int]:
    """A past window that needs between 1.3 and 2 times RATE_LIMIT requests at RATE_PAGE_SIZE."""
    end = today - timedelta(days=40)
    for n in range(1, 30):
        start = end - timedelta(days=n - 1)
        pages = math.ceil(sessions_in(1500, start, end) / RATE_PAGE_SIZE)
        if pages > 1.3 * RATE_LIMIT:
            assert pages <= 2 * RATE_LIMIT, pages
            return start, end, pages
    raise RuntimeError("no rate-limit window found")


class Background(threading.Thread):
    """The rate-limited scans, in their own event loop: they spend a minute waiting on the limit."""

    def __init__(self, start: date, end: date, runs: int) -> None:
        super().__init__(name="rate-limit", daemon=True)
        self.window = (start, end)
        self.runs = runs
        self.results: list[scan.RateRun] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        async def all_runs() -> list[scan.RateRun]:
            return list(
                await asyncio.gather(
                    *(scan.rate_limited_scan(*self.window, RATE_LIMIT, RATE_PAGE_SIZE) for _ in range(self.runs))
                )
            )

        try:
            self.results = asyncio.run(all_runs())
        except BaseException as exc:
            self.error = exc


async def measure(p: Plan) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    today = datetime.now(UTC).date()

    # -- the windows ------------------------------------------------------------------------------
    big_end = today - timedelta(days=20)
    big_start = big_end - timedelta(days=BIG_DAYS - 1)
    spd = round(10_000 * TARGET_SESSIONS / sessions_in(10_000, big_start, big_end))
    big_total = sessions_in(spd, big_start, big_end)
    small_spd = max(1, spd // 10)
    day_1k = min(
        (EPOCH + timedelta(days=d) for d in days(big_start, big_end)),
        key=lambda day: abs(sessions_in(small_spd, day, day) - 1000),
    )
    warm_day = today - timedelta(days=200)
    rate_start, rate_end, rate_pages = rate_window(today)

    say(f"sandbox: {spd:,} sessions/day, {big_start} → {big_end} (UTC) = {big_total:,} sessions")
    store_dir = tempfile.TemporaryDirectory(prefix="hardal-bench-")
    sandbox = scan.SandboxProcess(spd)
    try:
        background = Background(rate_start, rate_end, p.rate_runs)
        background.start()
        say(f"rate limit: {p.rate_runs} scan(s) of {rate_pages} requests at {RATE_LIMIT}/min started (≈ 1 min)")

        say("warming the sandbox (one floor scan, not timed)")
        await scan.floor_scan(sandbox, big_start, big_end)

        # -- 1. context cost (deterministic token counts, in process) ------------------------------
        say("context cost: tools/list baseline, list_sessions, summarize_sessions 1k/10k")
        sdk_default = await context.sdk_default_tools_tokens()
        listing_sandbox = context.Sandbox(SandboxConfig())
        listings = []
        for k in range(p.listing_windows):
            end = today - timedelta(days=10 + 30 * k)
            listings.append(await context.listing_cost(listing_sandbox, end - timedelta(days=2), end, LISTING_LIMIT))
        small = context.Sandbox(SandboxConfig(sessions_per_day=small_spd))
        digest_1k = await context.digest_cost(small, "1k", day_1k, day_1k)
        digest_10k = await context.digest_cost(small, "10k", big_start, big_end)
        big_sandbox = context.Sandbox(SandboxConfig(sessions_per_day=spd))
        sample = await big_sandbox.raw_pages(big_start, big_end, "UTC", limit=1000, pages=2)
        digest_100k = context.estimated_digest_cost(
            "100k", *await context.summarize_text(big_sandbox, big_start, big_end), sample
        )
        del big_sandbox  # its generated sessions

        say("waiting for the rate-limited scans")
        background.join()
        if background.error is not None:
            raise background.error

        # -- 2. scan throughput, 3. requests ------------------------------------------------------
        floors: list[scan.Run] = []
        servers: list[scan.ServerRun] = []
        for i in range(p.scan_runs):
            say(f"scan {i + 1}/{p.scan_runs}: floor, then a new hardal-mcp server")
            floors.append(await scan.floor_scan(sandbox, big_start, big_end))
            servers.append(
                await scan.server_scan(sandbox, big_start, big_end, (warm_day, warm_day), repeat=i == p.scan_runs - 1)
            )

        # -- 4. cold start, 5. warm latency -------------------------------------------------------
        env = {
            "HARDAL_API_KEY": DEMO_API_KEY,
            "HARDAL_WEBSITE_ID": DEMO_WEBSITE_ID,
            "HARDAL_BASE_URL": sandbox.url,
            # The default opens a day store; here a new one in a temporary directory, never the user's cache.
            "HARDAL_STORE": str(Path(store_dir.name) / "store.sqlite3"),
        }
        cold_ours: list[float] = []
        cold_bare: list[float] = []
        listed = None
        say(f"cold start: {p.cold_runs} × hardal-mcp and bare MCPServer, interleaved")
        for i in range(p.cold_runs):
            pair = [("ours", stdio.hardal_params(env)), ("bare", stdio.bare_params())]
            for name, params in pair if i % 2 == 0 else pair[::-1]:
                elapsed, tools = await stdio.cold_start(params)
                if name == "ours":
                    cold_ours.append(elapsed)
                    listed = tools
                else:
                    cold_bare.append(elapsed)
        assert listed is not None
        offenders = stdio.import_offenders()

        say(f"warm latency: {p.calls} list_sessions calls from cache, {p.calls} calls of the bare server's tool")
        listing_args = {
            "start_date": (today - timedelta(days=12)).isoformat(),
            "end_date": (today - timedelta(days=10)).isoformat(),
            "timezone": "UTC",
        }
        before = len(await sandbox.hits())
        warm_ours = await stdio.warm_latency(stdio.hardal_params(env), "list_sessions", listing_args, p.calls)
        warm_requests = len(await sandbox.hits()) - before - 1  # the warm-up's one request fills the cache
        warm_bare = await stdio.warm_latency(stdio.bare_params(), "echo", {"text": "hello"}, p.calls)
    finally:
        sandbox.stop()
        store_dir.cleanup()

    # -- the table ----------------------------------------------------------------------------------
    tools_tokens = context.tools_tokens(listed)
    rows.append(
        Row(
            f"tools/list, all {len(listed.tools)} tools (cl100k tokens)",
            num(tools_tokens),
            f"{num(sdk_default)} (SDK default schemas)" if sdk_default else "n/a",
            percent(tools_tokens / sdk_default) if sdk_default else "—",
            "≤ 3,000",
            tools_tokens <= 3000,
        )
    )
    listing_ratio = median([c.ratio for c in listings])
    rows.append(
        Row(
            f"list_sessions limit={LISTING_LIMIT}: tokens per session",
            num(median([c.tool_tokens / c.returned for c in listings]), 1),
            f"{num(median([c.raw_tokens / c.returned for c in listings]), 1)} (raw API JSON)",
            percent(listing_ratio),
            "≤ 45%, every field kept",
            listing_ratio <= 0.45,
        )
    )
    big_runs = sorted(servers, key=lambda r: r.cpu)
    for d in (digest_1k, digest_10k, digest_100k):
        estimate = " est." if d.raw_estimated else ""
        rows.append(
            Row(
                f"summarize_sessions output, {num(d.sessions)} sessions (tokens)",
                num(d.tool_tokens),
                f"{num(d.raw_tokens)} (raw JSON{estimate})",
                percent(d.ratio, 3),
                "≤ 1,500, flat",
                d.tool_tokens <= 1500,
            )
        )
    wall = median([r.wall for r in servers])
    floor_wall = median([r.wall for r in floors])
    cpu = median([r.cpu for r in servers])
    floor_cpu = median([r.cpu for r in floors])
    sessions = servers[0].sessions
    rss = median([r.rss_mb for r in servers])
    floor_rss = median([r.rss_mb for r in floors])
    rows += [
        Row(
            f"summarize {num(sessions)} sessions: wall (s)",
            num(wall, 2),
            f"{num(floor_wall, 2)} (floor)",
            times(wall / floor_wall),
        ),
        Row(
            "… server CPU time (s)",
            num(cpu, 2),
            f"{num(floor_cpu, 2)} (floor)",
            times(cpu / floor_cpu),
            "≤ 1.5×",
            cpu / floor_cpu <= 1.5,
        ),
        Row(
            "… sessions per second of server CPU",
            num(sessions / cpu),
            f"{num(sessions / floor_cpu)} (floor)",
            times((sessions / cpu) / (sessions / floor_cpu)),
            "≥ 200,000/s",
            sessions / cpu >= 200_000,
        ),
        Row(
            "… peak RSS growth (MB)",
            num(rss, 1),
            f"{num(floor_rss, 1)} (floor)",
            times(rss / floor_rss) if floor_rss > 0 else "—",
            "≤ 100 MB",
            rss <= 100,
        ),
    ]
    pages = math.ceil(sessions / 1000)
    requests = [r.requests for r in servers]
    last = servers[-1]
    rows += [
        Row(
            "upstream requests per scan",
            num(median(requests)) + ("" if len(set(requests)) == 1 else f" (runs: {requests})"),
            f"{num(pages)} (pages)",
            times(median(requests) / pages),
            "= pages",
            all(r == pages for r in requests),
        ),
        Row(
            "same question again within the cache lifetime: requests",
            f"{last.repeat_requests} (server CPU {num(last.repeat_cpu, 2)} s)",
            "0",
            "—",
            "0",
            last.repeat_requests == 0,
        ),
        Row(
            "… wall (s)",
            num(last.repeat_wall, 2),
            "—",
            "—",
            "≤ 0.3",
            last.repeat_wall <= 0.3,
        ),
        Row(
            f"{p.calls} warm list_sessions calls: requests",
            num(warm_requests),
            "0",
            "—",
            "0",
            warm_requests == 0,
        ),
    ]
    rates = background.results
    rejected = sum(r.rejected for r in rates)
    complete = all(r.complete for r in rates)
    rows += [
        Row(
            f"rate-limited summarize ({rate_pages} pages at {RATE_LIMIT}/min, 600 s deadline): pages read",
            ", ".join(f"{r.requests}" for r in rates) + ("" if complete else " (sampled)"),
            f"{rate_pages} (every page)",
            "—",
            "every page, in ⌈pages/limit⌉ minutes",
            complete and all(r.requests >= rate_pages for r in rates),
        ),
        Row(
            "… share of the limit used",
            percent(median([r.share for r in rates])) if complete else "— (not read whole)",
            f"{num(rates[0].ideal)} s (ideal first→last span)",
            "—",
            "≥ 90%",
            complete and median([r.share for r in rates]) >= 0.9,
        ),
        Row("… HTTP 429 answers", num(rejected), "0", "—", "0", rejected == 0),
    ]
    cold = median(cold_ours)
    bare = median(cold_bare)
    rows.append(
        Row(
            "cold start over stdio: spawn → initialize + tools/list (s)",
            num(cold, 3),
            f"{num(bare, 3)} (bare MCPServer)",
            f"{cold / bare:.3f}×",
            "≤ 1.15×",
            cold / bare <= 1.15,
        )
    )
    rows += [
        Row(
            "warm list_sessions from cache over stdio, p50 (ms)",
            num(warm_ours.p50 * 1000, 2),
            f"{num(warm_bare.p50 * 1000, 2)} (bare echo tool)",
            times(warm_ours.p50 / warm_bare.p50),
        ),
        Row(
            "… p99 (ms)",
            num(warm_ours.p99 * 1000, 2),
            f"{num(warm_bare.p99 * 1000, 2)} (bare echo tool)",
            times(warm_ours.p99 / warm_bare.p99),
        ),
    ]

    # -- notes --------------------------------------------------------------------------------------
    kept_values = sum(c.values for c in listings)
    kept_shown = sum(c.shown for c in listings)
    elided = sum(c.elided_steps for c in listings)
    notes += [
        "Tokens are cl100k (tiktoken). tools/list is the ListToolsResult a stdio client received from "
        "`python -m hardal_mcp`, its tools serialized as minified JSON (by alias, without nulls); the baseline "
        "is the same tool functions published by the SDK's defaults (no schema compaction, full output "
        "schemas), listed in memory. Token counts are deterministic: one measurement each.",
        f"list_sessions: limit={LISTING_LIMIT} over {len(listings)} past 3-day windows of the default sandbox "
        f"({', '.join(c.window for c in listings)}), median per-window ratio; tokens of the text content divided "
        f"by the rows it holds ({', '.join(str(c.returned) for c in listings)} rows: the {BUDGET_CHARS:,}-character "
        "output budget cuts the rest and says where to continue). Baseline: the same sessions as the API returned "
        "them, minified JSON (what a generic HTTP/OpenAPI bridge hands the model). Fields kept: "
        f"{percent(kept_shown / kept_values)} of the raw sessions' string values (ids, visitor, pages, "
        f"device/browser/os/country, field values) appear verbatim in the text; {num(elided)} path steps sit in "
        "the elided middles of long paths (`(+N pages)`).",
        f"summarize_sessions: windows of one day ({day_1k}, UTC) and of {BIG_DAYS} days ({big_start} → {big_end}) "
        f"with the sandbox at {num(small_spd)} sessions/day, and the same {BIG_DAYS} days at {num(spd)}/day, all "
        f"three in process (one code version). Raw tokens are exact for the first two; for {num(digest_100k.sessions)} "
        f"sessions they are estimated as the first {num(sum(len(s['sessions']) for s in sample))} sessions' "
        f"tokens per session × the count.",
        f"Scan: `summarize_sessions` over {num(sessions)} sessions ({BIG_DAYS} days, UTC) by `hardal-mcp "
        f"--transport http` (HARDAL_PAGE_SIZE=1000, rate limit off), a new server process per run so the response "
        f"cache starts empty; median of {p.scan_runs} runs, floor and server alternating. Server CPU time and peak "
        "RSS growth are the server process's own over the call (from /proc: utime+stime; VmHWM reset through "
        "clear_refs just before), after a one-page summary of another window loaded every code path. The sandbox "
        f"runs in its own process (`bench/sandbox_proc.py`, which lets the sandbox keep 1,024 generated blocks of 512 "
        "sessions instead of 128, so that the window stays generated) and was warmed by one untimed floor scan. "
        "Server runs' "
        f"CPU: {', '.join(num(r.cpu, 2) for r in big_runs)} s.",
        f"Floor (`bench/floor.py`): the same pages (first page, then the rest at fixed offsets with "
        f"SCAN_CONCURRENCY={SCAN_CONCURRENCY} in flight, page size 1000) downloaded with httpx2 and parsed with "
        "orjson in a child process, nothing else; its CPU and RSS are measured the same way. Wall times are "
        "mostly the sandbox's (one Python process generating and rendering ~36 MB of JSON), shared by both.",
        f"The last server answered the same question again: {last.repeat_requests} upstream requests, "
        f"{num(last.repeat_wall, 2)} s wall, {num(last.repeat_cpu, 2)} s CPU (the cache keeps each page as read, "
        "its masked columns, so a repeat only aggregates them again). Requests are counted by the sandbox (its "
        "traffic record, read through `/_bench/traffic/`).",
        f"Rate limit: {len(rates)} independent sandbox+server pairs at once, each sandbox enforcing "
        f"{RATE_LIMIT} requests/min (sliding 60 s window, 429 past it) and each server told HARDAL_RATE_LIMIT="
        f"{RATE_LIMIT}, HARDAL_PAGE_SIZE={RATE_PAGE_SIZE}, HARDAL_TOOL_TIMEOUT=600, HARDAL_STORE=off; one summarize "
        f"over {rate_start} → {rate_end} needs {rate_pages} requests to be read whole (the planner reads it whole "
        "when the call's allowance — the requests the rate budget lets start before the deadline — pays for every "
        "page, and samples otherwise: the scale section measures samples). "
        f"A sliding window lets a client send {RATE_LIMIT} at once and the rest "
        "exactly 60 s after the first ones, so no client obeying the limit can span less than "
        f"60 s × ⌊(n−1)/{RATE_LIMIT}⌋ = {num(rates[0].ideal)} s from its first to its last request. Share of the "
        "limit used = that ideal span / the measured span (sandbox arrival times); 100% wastes no time. "
        "(requests/elapsed × 60/limit would read above 100% here because of the burst a sliding window allows.) "
        f"Spans: {', '.join(num(r.span, 2) for r in rates)} s; call wall times "
        f"{', '.join(num(r.wall, 1) for r in rates)} s; requests {', '.join(str(r.requests) for r in rates)}; every "
        f"read whole: {complete}.",
        f"Cold start: `mcp.client.Client(StdioServerParameters(...))` from spawn to the tools/list answer, "
        f"`python -m hardal_mcp` against `python bench/bare_server.py` (one async tool), {p.cold_runs} runs each, "
        f"interleaved; median. Ours: {', '.join(num(t, 3) for t in cold_ours)} s; bare: "
        f"{', '.join(num(t, 3) for t in cold_bare)} s. Imports hardal-mcp adds to a bare MCPServer "
        "(`python -X importtime`, self ms): " + ", ".join(f"{name} {ms:.1f}" for name, ms in offenders) + ".",
        f"Warm latency: {p.calls} sequential `list_sessions` calls (limit 20, a past 3-day window) over one stdio "
        "session after 5 warm-up calls (the first fills the response cache); baseline: the same number of calls "
        "of the bare server's echo tool. p99 is the nearest-rank 99th percentile. CPU per call, server process / "
        f"SDK client (this process): ours {num(warm_ours.server_cpu * 1000, 2)} / "
        f"{num(warm_ours.client_cpu * 1000, 2)} ms, bare {num(warm_bare.server_cpu * 1000, 2)} / "
        f"{num(warm_bare.client_cpu * 1000, 2)} ms (the SDK client validates structured content against the "
        "tool's output schema with jsonschema, row by row).",
    ]
    return rows, notes


_load_at_start = os.getloadavg()


def header(flags: str, elapsed: float) -> list[str]:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=HERE.parent, check=False
    ).stdout.strip()
    return [
        f"`python -m bench{flags}` · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {elapsed:.0f} s · commit {commit or '?'}",
        f"{os.cpu_count()} CPUs · Python {platform.python_version()} · mcp {version('mcp')} · "
        f"httpx2 {version('httpx2')} · pydantic {version('pydantic')} · load average (1 min) "
        f"{_load_at_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end: other work on the machine "
        "slows both sides of every ratio, but not always equally",
    ]


def kept_sections(path: Path, text: str) -> str:
    """The sections of the recorded file this run does not write (calibration, the model-based test: other
    tools measure them), as they are, so that `--record` does not drop them."""
    if not path.exists():
        return ""
    old = path.read_text().split("\n## ")[1:]
    made = {part.split("\n", 1)[0] for part in text.split("\n## ")[1:]}
    return "".join(f"\n## {part.rstrip()}\n" for part in old if part.split("\n", 1)[0] not in made)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer runs and calls: 3 scans, 3 cold starts, 50 calls, one rate-limited scan; the scale section "
        "without its comparison and segment questions",
    )
    parser.add_argument(
        "--only",
        choices=("core", "scale", "engine"),
        help="one section: core (the table above the others), scale (bench/scale.py, issue 9) or engine "
        "(bench/engine.py, issue 14)",
    )
    parser.add_argument(
        "--legacy",
        type=Path,
        help="a checkout of an earlier version (git worktree add …): the engine section measures it beside this one",
    )
    parser.add_argument("--record", action="store_true", help="also write bench/RESULTS.md (the committed copy)")
    args = parser.parse_args(argv)
    if args.record and args.only:
        parser.error("--record writes every section: run without --only")
    p = plan(args.quick)
    rows: list[Row] = []
    notes: list[str] = []
    if args.only in (None, "core"):
        rows, notes = asyncio.run(measure(p))
    sections = []
    if args.only in (None, "scale"):
        say("scale section (bench/scale.py)")
        results = asyncio.run(scale.measure(p.quick))
        scale_rows, scale_notes = scale.rows_and_notes(results)
        sections.append(Section(scale.TITLE, scale.INTRO, scale_rows, scale_notes))
    if args.only in (None, "engine"):
        say("engine section (bench/engine.py)")
        measured = asyncio.run(engine.measure(engine.PER_DAY, 2 if p.quick else 3, args.legacy))
        sections.append(Section(engine.TITLE, engine.INTRO, *engine.rows_and_notes(measured), baseline="legacy"))
    flags = " --quick" if p.quick else ""
    flags += f" --only {args.only}" if args.only else ""
    text = document("hardal-mcp benchmarks", header(flags, time.perf_counter() - _started), rows, notes, sections)
    print(text)
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "latest.md").write_text(text)
    if args.record:
        (HERE / "RESULTS.md").write_text(text + kept_sections(HERE / "RESULTS.md", text))
    return 0
