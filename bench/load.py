"""Load script for the streamable HTTP transport (not a timed test): many MCP clients, all five tools.

    python bench/load.py [--clients 50] [--calls 3000] [--warmup 200] [--max-seconds 300]

Starts the embedded sandbox (`python -m hardal_mcp sandbox`, no rate limit) and hardal-mcp
(`python -m hardal_mcp --transport http`) as loopback subprocesses, then runs `--clients` concurrent MCP
clients, each its own `mcp.client.Client` over streamable HTTP with its own connection pool. Every client
takes call after call from one shared, bounded supply and makes a mix of summarize_sessions,
list_sessions, get_session_activity (ids taken from list results), analyze_funnel and analyze_paths with
varied windows (presets, past custom windows, two time zones), segments, limits and offsets, funnel
steps and path pages.

Phases. Warm-up first (`--warmup` calls, not measured): it begins by summarizing every window of the pool
once with compare="previous_period", so the server's response cache holds the pool's closed windows, then
runs the ordinary mix. When every warm-up call is done the server's RSS is read and the measured phase
(`--calls` calls) begins. In it, cache hits (pool windows) and fresh upstream scans both happen: windows
that include today expire from the cache after 60 s, and about `--cold-share` of the scanning calls read a
single past day never asked before (each adds one small body, ~0.1 MB, to the cache; the bound below
allows for them). The sandbox's access log counts the upstream requests of each phase as evidence.

Bounds. At most `--calls` measured calls; no new call starts after `--max-seconds` (warm-up included);
every call has its own timeout (`--call-timeout`). The server's rate limit is raised to 100,000/min
(HARDAL_RATE_LIMIT) because the sandbox enforces none: the client-side limiter would otherwise turn the
run into a test of the 100/min default.

Report: calls, calls/s, p50/p95/p99/max latency overall and per tool, errors (isError results and
exceptions, first few messages), the server's RSS (VmRSS sampled every `--sample-every` s; VmHWM) at
start, after warm-up, at the end and at peak, CPU time of the three processes, and whether the targets
hold: zero errors and RSS growth after warm-up within `--rss-bound-mb`. During the measured phase it also
times the server's /healthz route (same event loop as the tools: its latency is the loop's
responsiveness) and one small request straight to the sandbox, twice a second, so slow answers can be
placed on the server or on the upstream. Prints a markdown table for the README and exits 1 on any error
or a missed target (2 when it could not run at all). Both subprocesses are stopped in all cases.

The RSS bound. The server keeps upstream bodies in a response cache capped at 64 MiB
(`hardal_mcp.client.ResponseCache`); expired entries leave only when asked for again or pushed out by the
cap, so every new question (a cold day, a session's activity) adds to it until the cap. The warm-up leaves
~23 MB of bodies in it (the pool and its previous periods at 300 sessions/day, ~335 bytes a session); the
default measured phase adds ~10 MB more. A much longer run would keep growing by up to ~40 MB more until
the cap holds, and that would be the cache, not a leak. `--mix list_sessions=1,get_session_activity=3` narrows the mix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("summarize_sessions", "list_sessions", "get_session_activity", "analyze_funnel", "analyze_paths")
MIX = {  # share of calls per tool in the ordinary mix
    "summarize_sessions": 0.25,
    "list_sessions": 0.25,
    "get_session_activity": 0.20,
    "analyze_funnel": 0.15,
    "analyze_paths": 0.15,
}
RATE_LIMIT = "100000"
MB = 2**20

# -- the argument pool ---------------------------------------------------------------------------------

PRESETS = ("today", "yesterday", "last7days", "last30days")
ZONES = (None, "UTC")  # None: the server's default (Europe/Istanbul)
# Past custom windows, closed (so cached for an hour): (days back to the end, length in days).
CUSTOM = ((8, 1), (9, 2), (10, 3), (12, 7), (15, 14), (20, 1), (21, 5), (25, 7), (30, 10), (40, 3), (45, 7), (60, 14))
SEGMENTS: tuple[dict[str, Any], ...] = (
    {"device": "Mobile"},
    {"country": ["Turkey", "Germany"]},
    {"fields": {"utm_source": "google"}},
    {"bounced": False, "min_pageviews": 2},
    {"visited": "/cart"},
    {"returning": True},
    {"landing_page": "/products/*"},
    {"browser": "chrome", "os": ["Windows", "macOS"]},
    {"not_visited": "/checkout*", "min_duration": 30},
)
FUNNELS = (
    ["/", "/products", "/cart", "/checkout", "/checkout/success"],
    ["/products/*", "/cart", "/checkout*"],
    ["/blog*", "/products*"],
    ["/pricing", "/checkout"],
    ["/search*", "/products/*", "/cart"],
)
BREAKDOWNS = (None, None, "country", "device", "utm_source")
PATH_PAGES = (None, None, "/cart", "/products/*", "/checkout", "/", "/blog/*", "/pricing")


def window_args(back: int, days: int, zone: str | None = None) -> dict[str, Any]:
    end = date.today() - timedelta(days=back)
    args: dict[str, Any] = {"start_date": (end - timedelta(days=days - 1)).isoformat(), "end_date": end.isoformat()}
    if zone:
        args["timezone"] = zone
    return args


def pool_windows() -> list[dict[str, Any]]:
    """The windows ordinary calls pick from; the warm-up summarizes each of them once."""
    windows: list[dict[str, Any]] = []
    for preset in PRESETS:
        for zone in ZONES:
            windows.append({"timeframe": preset, **({"timezone": zone} if zone else {})})
    windows += [window_args(back, days) for back, days in CUSTOM]
    return windows


class Workload:
    """Tool calls to make: the n-th call's arguments depend only on n, the seed and the ids seen so far."""

    def __init__(self, seed: int, cold_share: float, mix: dict[str, float] | None = None) -> None:
        self.seed = seed
        self.mix = mix or MIX
        self.cold_share = cold_share
        self.windows = pool_windows()
        self.cold = deque(window_args(back, 1) for back in range(70, 430))  # single past days, each used once
        self.cold_used = 0
        self.ids: list[str] = []  # session ids from list_sessions answers

    def call(self, n: int, *, warmup: bool) -> tuple[str, dict[str, Any]]:
        if warmup and n < len(self.windows):  # prime the cache with every pool window (and its previous period)
            return "summarize_sessions", {**self.windows[n], "compare": "previous_period"}
        rng = random.Random(self.seed * 1_000_003 + n * 2 + warmup)  # a workload, not a secret
        tool = rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        if tool == "get_session_activity" and not self.ids:
            tool = "list_sessions"
        if tool == "get_session_activity":
            args: dict[str, Any] = {"session_id": rng.choice(self.ids[-2000:])}
            if rng.random() < 0.3:
                args["order"] = "desc"
            if rng.random() < 0.3:
                args["limit"] = rng.choice([5, 20, 50])
            if rng.random() < 0.2:
                args["timezone"] = "UTC"
            return tool, args
        window = dict(rng.choice(self.windows))
        scanning = tool != "list_sessions"
        if scanning and not warmup and self.cold and rng.random() < self.cold_share:
            window = self.cold.popleft()
            self.cold_used += 1
        args = window
        segment_share = 0.3 if tool in ("list_sessions", "summarize_sessions") else 0.2
        segment = rng.choice(SEGMENTS) if rng.random() < segment_share else None
        if segment is not None:
            args["segment"] = segment
        if tool == "list_sessions":
            args["limit"] = rng.choice([5, 20, 50])
            args["offset"] = rng.choice([0, 0, 20, 100, 500])
            if segment is not None:
                args["max_scan"] = rng.choice([1000, 5000])
        elif tool == "summarize_sessions":
            args["top"] = rng.choice([5, 10, 15])
            if rng.random() < 0.2:
                args["compare"] = "previous_period"
            if rng.random() < 0.15:
                args["max_sessions"] = rng.choice([500, 2000])  # a partial scan
        elif tool == "analyze_funnel":
            args["steps"] = list(rng.choice(FUNNELS))
            if (breakdown := rng.choice(BREAKDOWNS)) is not None:
                args["breakdown"] = breakdown
            args["top"] = rng.choice([3, 5])
        else:
            if (page := rng.choice(PATH_PAGES)) is not None:
                args["page"] = page
            args["top"] = rng.choice([5, 10])
        return tool, args

    def harvest(self, tool: str, structured: Any) -> None:
        if tool != "list_sessions" or not isinstance(structured, dict):
            return
        for row in structured.get("sessions") or []:
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                self.ids.append(row["id"])
        if len(self.ids) > 4000:
            del self.ids[:2000]


# -- child processes and /proc -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """`python -m hardal_mcp ARGS` listening on a loopback port; stderr goes to a temporary file."""

    def __init__(self, name: str, args: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.log: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-m", "hardal_mcp", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait_listening(self, timeout: float = 30.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.stderr_tail()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return time.monotonic() - started
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: nothing listening on 127.0.0.1:{self.port} after {timeout} s")

    def stderr_bytes(self) -> bytes:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stderr_tail(self, limit: int = 2000) -> str:
        return self.stderr_bytes().decode(errors="replace")[-limit:]

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        self.log.close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(rest.split()[0]) * 1024
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the peak of the measured phase can be read."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Sample:
    tool: str
    seconds: float
    error: str | None


@dataclass
class Run:
    args: argparse.Namespace
    workload: Workload
    url: str
    pid: int
    started: float = field(default_factory=time.monotonic)
    phase: str = "warmup"
    issued: dict[str, int] = field(default_factory=lambda: {"warmup": 0, "measure": 0})
    done: dict[str, int] = field(default_factory=lambda: {"warmup": 0, "measure": 0})
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {"warmup": [], "measure": []})
    connect_errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    connect_seconds: list[float] = field(default_factory=list)
    rss: list[tuple[float, str, int]] = field(default_factory=list)
    probes: dict[str, list[float]] = field(default_factory=lambda: {"healthz": [], "sandbox": []})
    probe_errors: list[str] = field(default_factory=list)
    time_bound_hit: bool = False
    warmup_done: asyncio.Event = field(default_factory=asyncio.Event)
    measure_go: asyncio.Event = field(default_factory=asyncio.Event)
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)

    def quota(self, phase: str) -> int:
        return int(self.args.warmup if phase == "warmup" else self.args.calls)

    async def take(self) -> tuple[str, int] | None:
        """The next call to make, as (phase, index); None when the supply or the time is exhausted."""
        while True:
            if time.monotonic() - self.started > self.args.max_seconds:
                self.time_bound_hit = True
                self._check_warmup()
                return None
            phase = self.phase
            if self.issued[phase] < self.quota(phase):
                n = self.issued[phase]
                self.issued[phase] += 1
                return phase, n
            if phase == "measure":
                return None
            await self.measure_go.wait()  # every warm-up call is out; wait for the measured phase

    def finish(self, phase: str, sample: Sample) -> None:
        self.samples[phase].append(sample)
        self.done[phase] += 1
        self._check_warmup()

    def _check_warmup(self) -> None:
        """Warm-up is over when every warm-up call issued has finished and no more will be issued."""
        out = self.issued["warmup"] >= self.quota("warmup") or self.time_bound_hit
        if out and self.done["warmup"] >= self.issued["warmup"]:
            self.warmup_done.set()


async def one_call(run: Run, client: Client, phase: str, n: int) -> bool:
    """Make the n-th call of `phase`; False if it raised (the client then reconnects)."""
    tool, arguments = run.workload.call(n, warmup=phase == "warmup")
    timeout = run.args.call_timeout
    began = time.perf_counter()
    error: str | None = None
    raised = False
    try:
        with anyio.fail_after(timeout + 5):  # a backstop behind the SDK's own per-request timeout
            result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
    except Exception as exc:  # every failure is a finding, reported with its type
        error = f"{tool} raised {type(exc).__name__}: {exc!s}"[:400] or type(exc).__name__
        raised = True
    else:
        if result.is_error:
            text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
            error = f"{tool} isError: {text}"[:400]
        else:
            run.workload.harvest(tool, result.structured_content)
    seconds = time.perf_counter() - began
    if error is not None:
        error += f" (args {arguments})"
    run.finish(phase, Sample(tool, seconds, error))
    return not raised


async def worker(run: Run, index: int, connected: list[int]) -> None:
    timeout = httpx2.Timeout(30.0, read=run.args.call_timeout + 10)
    first = True
    while True:
        began = time.perf_counter()
        try:
            async with (
                httpx2.AsyncClient(timeout=timeout) as http,
                Client(streamable_http_client(f"{run.url}/mcp", http_client=http)) as client,
            ):
                run.connect_seconds.append(time.perf_counter() - began)
                if first:
                    first = False
                    connected.append(index)
                    if len(connected) == run.args.clients:
                        run.all_connected.set()
                    await run.all_connected.wait()
                while (ticket := await run.take()) is not None:
                    if not await one_call(run, client, *ticket):
                        break  # reconnect after an exception: the session may be broken
                else:
                    return
        except Exception as exc:  # the session broke or never opened: count it, reconnect
            run.connect_errors.append(f"client {index}: {type(exc).__name__}: {exc!s}"[:400])
            if first:  # never connected: do not hold the others back
                first = False
                connected.append(index)
                if len(connected) == run.args.clients:
                    run.all_connected.set()
            if len(run.connect_errors) > 5 * run.args.clients:
                return
            await anyio.sleep(0.5)
        run.reconnects += 1


async def sampler(run: Run, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            run.rss.append((time.monotonic(), run.phase, proc_status(run.pid)["VmRSS"]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), run.args.sample_every)


async def prober(run: Run, sandbox_url: str, stop: asyncio.Event) -> None:
    """During the measured phase, time the server's trivial /healthz route (it shares the event loop with
    the tools, so its latency is the loop's responsiveness) and one small request straight to the sandbox
    (the upstream's own responsiveness), about twice a second."""
    day = (date.today() - timedelta(days=9)).isoformat()
    upstream = (
        f"{sandbox_url}/api/websites/demo/sessions?timeframe=custom&startDate={day}&endDate={day}&limit=1&offset=0"
    )
    await run.measure_go.wait()
    async with httpx2.AsyncClient(timeout=30.0, headers={"Authorization": "Bearer demo-key"}) as http:
        while not stop.is_set():
            for name, url in (("healthz", f"{run.url}/healthz"), ("sandbox", upstream)):
                began = time.perf_counter()
                try:
                    response = await http.get(url)
                    response.raise_for_status()
                except Exception as exc:  # a probe failing is reported, never fatal
                    run.probe_errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
                else:
                    run.probes[name].append(time.perf_counter() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


def log_offset(child: Child) -> int:
    child.log.flush()
    return os.fstat(child.log.fileno()).st_size


def upstream_requests(raw: bytes) -> Counter[str]:
    """Count the sandbox's access-log lines: sessions and activity requests, and non-200 answers."""
    counts: Counter[str] = Counter()
    for line in raw.decode(errors="replace").splitlines():
        match = re.search(r'"GET /api/websites/[^/]+/sessions(/[^ ?]+/activity)?[^"]*" (\d{3})', line)
        if match:
            counts["activity" if match.group(1) else "sessions"] += 1
            if match.group(2) != "200":
                counts[f"status {match.group(2)}"] += 1
    return counts


async def drive(run: Run, sandbox: Child, server: Child) -> dict[str, Any]:
    stop_sampling, workers_done = asyncio.Event(), asyncio.Event()
    facts: dict[str, Any] = {"rss_start": proc_status(run.pid), "cpu_start": cpu_seconds(run.pid)}
    connected: list[int] = []

    async def workers() -> None:
        try:
            async with anyio.create_task_group() as inner:
                for i in range(run.args.clients):
                    inner.start_soon(worker, run, i, connected)
        finally:
            workers_done.set()
            run.all_connected.set()  # release the coordinator if every client gave up
            run.warmup_done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(sampler, run, stop_sampling)
        group.start_soon(prober, run, sandbox.url, stop_sampling)
        group.start_soon(workers)
        await run.all_connected.wait()
        facts["connect_s"] = time.monotonic() - run.started
        log0 = log_offset(sandbox)
        await run.warmup_done.wait()
        await anyio.sleep(1.0)  # let the server settle before reading its memory
        facts["rss_warm"] = proc_status(run.pid)
        facts["hwm_reset"] = reset_hwm(run.pid)
        facts["cpu_warm"] = cpu_seconds(run.pid)
        facts["others_warm"] = (cpu_seconds(sandbox.proc.pid), own_cpu())
        facts["upstream_warm"] = upstream_requests(sandbox.stderr_bytes()[log0:])
        log1 = log_offset(sandbox)
        run.phase = "measure"
        measure_start = time.monotonic()
        run.measure_go.set()
        await workers_done.wait()
        facts["measure_s"] = time.monotonic() - measure_start
        await anyio.sleep(1.0)
        stop_sampling.set()
    facts["rss_end"] = proc_status(run.pid)
    facts["cpu_end"] = cpu_seconds(run.pid)
    facts["others_end"] = (cpu_seconds(sandbox.proc.pid), own_cpu())
    facts["loadavg"] = loadavg()
    facts["upstream_measure"] = upstream_requests(sandbox.stderr_bytes()[log1:])
    facts["server_alive"] = server.proc.poll() is None
    return facts


# -- reporting -----------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:,.0f}"


def mb(n: float) -> str:
    return f"{n / MB:,.1f}"


def report(run: Run, facts: dict[str, Any], server: Child) -> int:
    args, measured = run.args, run.samples["measure"]
    errors = [s.error for s in run.samples["warmup"] + measured if s.error] + run.connect_errors
    lat = [s.seconds for s in measured]
    rate = len(measured) / facts["measure_s"] if facts["measure_s"] > 0 else 0.0
    rss_warm, rss_end = facts["rss_warm"]["VmRSS"], facts["rss_end"]["VmRSS"]
    measure_rss = [r for _, phase, r in run.rss if phase == "measure"]
    peak_measure = max([*measure_rss, rss_end, facts["rss_end"]["VmHWM"] if facts["hwm_reset"] else 0])
    growth = rss_end - rss_warm
    half = measure_rss[len(measure_rss) // 2] if measure_rss else rss_warm
    bound = args.rss_bound_mb * MB
    cpu = facts["cpu_end"] - facts["cpu_warm"]
    up_w, up_m = facts["upstream_warm"], facts["upstream_measure"]
    server_log = server.stderr_bytes().decode(errors="replace")
    tracebacks = server_log.count("Traceback")
    problem_lines = [ln for ln in server_log.splitlines() if re.search(r"\b(ERROR|CRITICAL|WARNING)\b", ln)]

    ok_errors = not errors
    ok_rss = growth <= bound
    ok_count = len(measured) == args.calls
    print()
    print(
        f"## hardal-mcp over streamable HTTP: {args.clients} MCP clients on loopback, sandbox at "
        f"{args.sessions_per_day} sessions/day"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| concurrent MCP clients | {args.clients} (each its own streamable HTTP session and connection pool) |")
    print(f"| calls measured | {len(measured):,} of {args.calls:,} (after {run.done['warmup']:,} warm-up calls) |")
    print(f"| measured phase | {facts['measure_s']:.1f} s |")
    print(f"| throughput | {rate:,.1f} calls/s |")
    worst = max(lat, default=float("nan"))
    quantiles = " / ".join(ms(pct(lat, p)) for p in (50, 95, 99))
    print(f"| latency p50 / p95 / p99 / max | {quantiles} / {ms(worst)} ms |")
    print(f"| errors (isError + exceptions) | {len(errors)} |")
    for name, label in (("healthz", "server /healthz under load"), ("sandbox", "sandbox, asked directly")):
        got = run.probes[name]
        print(
            f"| {label}: p50 / p95 / max | {ms(pct(got, 50))} / {ms(pct(got, 95))} / "
            f"{ms(max(got, default=float('nan')))} ms ({len(got)} probes) |"
        )
    print(
        f"| upstream requests (measured) | {up_m['sessions']:,} session pages + {up_m['activity']:,} activity "
        f"(warm-up: {up_w['sessions']:,} + {up_w['activity']:,}) |"
    )
    span = max(facts["measure_s"], 1e-9)
    sandbox_cpu = facts["others_end"][0] - facts["others_warm"][0]
    own = facts["others_end"][1] - facts["others_warm"][1]
    print(
        f"| CPU in the measured phase: server / sandbox / load generator | {cpu:.1f} s ({cpu / span:.0%} of a core, "
        f"{cpu / max(1, len(measured)) * 1000:.1f} ms per call) / {sandbox_cpu:.1f} s / {own:.1f} s |"
    )
    print(f"| host: CPUs, load average (1/5/15 min) at the end | {os.cpu_count()}, {' / '.join(facts['loadavg'])} |")
    print(
        f"| server RSS: start / after warm-up / mid / end | {mb(facts['rss_start']['VmRSS'])} / {mb(rss_warm)} / "
        f"{mb(half)} / {mb(rss_end)} MB |"
    )
    lifetime = max(peak_measure, facts["rss_warm"]["VmHWM"], *(r for _, _, r in run.rss))
    print(f"| server peak RSS (measured phase / whole run) | {mb(peak_measure)} / {mb(lifetime)} MB |")
    print(
        f"| RSS growth after warm-up (end − after warm-up) | {'+' if growth >= 0 else '−'}{mb(abs(growth))} MB "
        f"(bound {args.rss_bound_mb} MB: {'met' if ok_rss else 'MISSED'}) |"
    )
    print()
    print("| tool | calls | p50 ms | p95 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for tool in TOOLS:
        mine = [s for s in measured if s.tool == tool]
        t = [s.seconds for s in mine]
        print(
            f"| {tool} | {len(mine):,} | {ms(pct(t, 50))} | {ms(pct(t, 95))} | {ms(pct(t, 99))} | "
            f"{ms(max(t, default=float('nan')))} | {sum(1 for s in mine if s.error)} |"
        )
    print()
    print(
        f"Setup: Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}; server HARDAL_RATE_LIMIT={RATE_LIMIT}/min (the sandbox has no limit, so the "
        f"client-side limiter is opened up), HARDAL_PAGE_SIZE default; per-call timeout {args.call_timeout:g} s; "
        f"{run.workload.cold_used} cold single-day windows in the measured phase; seed {args.seed}."
    )
    print()
    verdict = []
    verdict.append(f"errors: {len(errors)} (target 0) — {'met' if ok_errors else 'MISSED'}")
    verdict.append(
        f"RSS growth after warm-up: {growth / MB:+.1f} MB (bound {args.rss_bound_mb:g} MB) — "
        + ("met" if ok_rss else "MISSED")
    )
    if not ok_count:
        why = "time bound (--max-seconds) reached" if run.time_bound_hit else "clients gave up"
        verdict.append(f"only {len(measured)} of {args.calls} calls made: {why}")
    if run.reconnects:
        verdict.append(f"client reconnects: {run.reconnects}")
    if up_m.get("status 429") or any(k.startswith("status") for k in up_m):
        verdict.append(f"non-200 upstream answers: {dict((k, v) for k, v in up_m.items() if k.startswith('status'))}")
    if not facts["server_alive"]:
        verdict.append("the server process died during the run")
    verdict.append(f"server stderr: {tracebacks} tracebacks, {len(problem_lines)} warning/error lines")
    for line in verdict:
        print(f"- {line}")
    if errors:
        print("\nFirst errors:")
        for message in errors[: args.show_errors]:
            print(f"  - {message}")
        kinds = Counter(re.sub(r"\(args .*", "", e)[:120] for e in errors)
        print("Error kinds:")
        for kind, count in kinds.most_common(10):
            print(f"  {count:5d} × {kind}")
    if problem_lines or tracebacks:
        print("\nServer stderr (first lines of interest):")
        for line in problem_lines[:10]:
            print(f"  {line[:300]}")
        if tracebacks:
            first = server_log.index("Traceback")
            print(server_log[first : first + 3000])
    if not facts["server_alive"]:
        print(f"\nserver stderr tail:\n{server.stderr_tail()}")
    return 0 if ok_errors and ok_rss and ok_count and facts["server_alive"] else 1


# -- entry point ---------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--clients", type=int, default=50, help="concurrent MCP clients (default 50)")
    p.add_argument("--calls", type=int, default=3000, help="measured calls in all (default 3000)")
    p.add_argument("--warmup", type=int, default=200, help="warm-up calls before measuring (default 200)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="no new call after this (default 300)")
    p.add_argument("--call-timeout", type=float, default=60.0, help="seconds for one call (default 60)")
    p.add_argument("--sessions-per-day", type=int, default=300, help="sandbox traffic (default 300)")
    p.add_argument("--rss-bound-mb", type=float, default=50.0, help="allowed RSS growth after warm-up (default 50)")
    p.add_argument("--cold-share", type=float, default=0.04, help="share of scans reading a never-seen day")
    p.add_argument("--sample-every", type=float, default=0.25, help="RSS sampling period, s (default 0.25)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mix", type=parse_mix, default=None, help="e.g. list_sessions=1,get_session_activity=3")
    p.add_argument("--show-errors", type=int, default=5, help="error messages to print (default 5)")
    args = p.parse_args(argv)
    if args.clients < 1 or args.calls < 1 or args.warmup < len(pool_windows()):
        p.error(f"--clients and --calls must be ≥ 1 and --warmup ≥ {len(pool_windows())} (the pool sweep)")
    return args


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in TOOLS:
            raise argparse.ArgumentTypeError(f"unknown tool {name!r}; one of {', '.join(TOOLS)}")
        mix[name.strip()] = float(weight or 1)
    return mix


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The inherited environment without any HARDAL_* setting (an inherited HARDAL_MCP_TOKEN would turn
    auth on), plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    return {**env, **extra}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    children: list[Child] = []
    wall = time.monotonic()
    try:
        sandbox_port, server_port = free_port(), free_port()
        sandbox = Child(
            "sandbox",
            ["sandbox", "--port", str(sandbox_port), "--sessions-per-day", str(args.sessions_per_day)],
            sandbox_port,
            child_env({}),
        )
        children.append(sandbox)
        sandbox.wait_listening()
        server = Child(
            "hardal-mcp",
            ["--transport", "http", "--port", str(server_port)],
            server_port,
            child_env(
                {
                    "HARDAL_BASE_URL": sandbox.url,
                    "HARDAL_API_KEY": "demo-key",
                    "HARDAL_WEBSITE_ID": "demo",
                    "HARDAL_RATE_LIMIT": RATE_LIMIT,
                }
            ),
        )
        children.append(server)
        server.wait_listening()
        print(
            f"sandbox pid {sandbox.proc.pid} on {sandbox.url} ({args.sessions_per_day} sessions/day, no rate limit); "
            f"hardal-mcp pid {server.proc.pid} on {server.url}/mcp with HARDAL_RATE_LIMIT={RATE_LIMIT}/min "
            "(raised from the default 100 because the sandbox enforces no limit)",
            flush=True,
        )
        print(
            f"{args.clients} clients, {args.warmup} warm-up + {args.calls} measured calls, at most "
            f"{args.max_seconds:g} s, {args.call_timeout:g} s per call …",
            flush=True,
        )
        run = Run(args, Workload(args.seed, args.cold_share, args.mix), server.url, server.proc.pid)

        async def go() -> dict[str, Any]:
            run.started = time.monotonic()
            return await drive(run, sandbox, server)

        facts = asyncio.run(go())
        status = report(run, facts, server)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    except Exception as exc:  # could not run at all: say why, with the children's stderr
        print(f"load run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for child in children:
            print(f"--- {child.name} stderr tail ---\n{child.stderr_tail()}", file=sys.stderr)
        status = 2
    finally:
        for child in reversed(children):  # the server first, then the sandbox it talks to
            code = child.stop()
            if code not in (0, -signal.SIGTERM, None):
                print(f"{child.name} exited with {code}", file=sys.stderr)
            child.close()
    print(f"\ntotal runtime {time.monotonic() - wall:.1f} s (subprocesses stopped)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
