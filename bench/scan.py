"""Scans over loopback: hardal-mcp's `summarize_sessions` against the floor (download + parse only), the
upstream requests a scan makes, and how well a scan uses a rate limit.

Every process here is separate: the sandbox (`bench.sandbox_proc`), each hardal-mcp server
(`hardal-mcp --transport http`, a new one per timed run so its response cache starts empty) and each
floor run (`bench.floor`). The benchmark itself is only the MCP client, and its CPU is never counted."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from mcp.client import Client

from bench.context import text_of
from bench.procs import Child, SandboxProcess, cpu_seconds, free_port, peak_rss_growth, reset_peak_rss
from hardal_mcp.planner import CONCURRENCY as SCAN_CONCURRENCY
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID


def server_env(sandbox: SandboxProcess, **extra: str) -> dict[str, str]:
    return {
        "HARDAL_BASE_URL": sandbox.url,
        "HARDAL_API_KEY": DEMO_API_KEY,
        "HARDAL_WEBSITE_ID": DEMO_WEBSITE_ID,
        "HARDAL_TIMEZONE": "UTC",
        "HARDAL_STORE": "off",  # scans measure the network path; bench/scale.py measures the day store
        **extra,
    }


class ServerProcess(Child):
    """`hardal-mcp --transport http` (as `python -m hardal_mcp`), MCP at /mcp."""

    def __init__(self, env: dict[str, str], cwd: Path | None = None) -> None:
        port = free_port()
        super().__init__(["-m", "hardal_mcp", "--transport", "http", "--port", str(port)], port, env, cwd=cwd)
        self.mcp_url = f"{self.url}/mcp"


def window_args(start: date, end: date, **extra: Any) -> dict[str, Any]:
    return {"start_date": start.isoformat(), "end_date": end.isoformat(), "timezone": "UTC", **extra}


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    sessions: int
    requests: int  # upstream requests the sandbox saw during the run
    text: str = ""


@dataclass
class ServerRun(Run):
    repeat_requests: int = -1  # the same question again, within the cache lifetime
    repeat_cpu: float = math.nan
    repeat_wall: float = math.nan


async def server_scan(
    sandbox: SandboxProcess, start: date, end: date, warm: tuple[date, date], *, repeat: bool
) -> ServerRun:
    """One summarize_sessions over the window by a new server process: wall, the server's CPU time and
    peak RSS growth over the call. A one-page summary of another window first loads every code path."""
    env = server_env(sandbox, HARDAL_RATE_LIMIT="100000", HARDAL_TOOL_TIMEOUT="600", HARDAL_PAGE_SIZE="1000")
    with ServerProcess(env) as server:
        try:
            return await _server_scan(server, sandbox, start, end, warm, repeat=repeat)
        except Exception as exc:  # the client wraps failures in exception groups: say what the server said
            raise RuntimeError(f"server scan failed ({exc!r}); server stderr:\n{server.stderr()}") from exc


async def _server_scan(
    server: ServerProcess, sandbox: SandboxProcess, start: date, end: date, warm: tuple[date, date], *, repeat: bool
) -> ServerRun:
    async with Client(server.mcp_url) as client:
        text_of(await client.call_tool("summarize_sessions", window_args(*warm, max_sessions=1000)))
        args = window_args(start, end, max_sessions=200_000)
        before = len(await sandbox.hits())
        cpu, rss = cpu_seconds(server.pid), reset_peak_rss(server.pid)
        wall = time.perf_counter()
        result = await client.call_tool("summarize_sessions", args)
        wall = time.perf_counter() - wall
        cpu, rss = cpu_seconds(server.pid) - cpu, peak_rss_growth(rss, server.pid)
        text = text_of(result)
        after = len(await sandbox.hits())
        run = ServerRun(
            wall=wall,
            cpu=cpu,
            rss_mb=rss / 2**20,
            sessions=int((result.structured_content or {})["coverage"]["scanned"]),
            requests=after - before,
            text=text,
        )
        if repeat:
            cpu, wall = cpu_seconds(server.pid), time.perf_counter()
            text_of(await client.call_tool("summarize_sessions", args))
            run.repeat_wall, run.repeat_cpu = time.perf_counter() - wall, cpu_seconds(server.pid) - cpu
            run.repeat_requests = len(await sandbox.hits()) - after
    return run


async def floor_scan(sandbox: SandboxProcess, start: date, end: date) -> Run:
    before = len(await sandbox.hits())
    command = [sys.executable, "-m", "bench.floor", sandbox.url, DEMO_WEBSITE_ID, start.isoformat(), end.isoformat()]
    command += ["UTC", "1000", str(SCAN_CONCURRENCY)]
    process = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
    if process.returncode:
        raise RuntimeError(f"floor failed: {process.stderr[-2000:]}")
    out = json.loads(process.stdout)
    requests = len(await sandbox.hits()) - before - 1  # less its warm-up request
    return Run(wall=out["wall"], cpu=out["cpu"], rss_mb=out["rss_mb"], sessions=out["sessions"], requests=requests)


@dataclass
class RateRun:
    limit: int
    requests: int  # accepted (2xx) requests of the scan
    rejected: int  # 429s
    span: float  # seconds from the first to the last accepted request, as the sandbox saw them
    ideal: float  # the shortest span any client obeying the limit could have
    wall: float
    complete: bool

    @property
    def share(self) -> float:
        return self.ideal / self.span if self.span > 0 else math.nan


async def rate_limited_scan(start: date, end: date, limit: int, page_size: int) -> RateRun:
    """A scan needing more requests than the limit allows in a minute, with the sandbox enforcing the
    limit (sliding 60 s window) and the server told the same limit."""
    with SandboxProcess(1500, rate_limit=limit) as sandbox:
        env = server_env(
            sandbox, HARDAL_RATE_LIMIT=str(limit), HARDAL_PAGE_SIZE=str(page_size), HARDAL_TOOL_TIMEOUT="600"
        )
        with ServerProcess(env) as server:
            async with Client(server.mcp_url) as client:
                wall = time.perf_counter()
                result = await client.call_tool("summarize_sessions", window_args(start, end))
                wall = time.perf_counter() - wall
                text_of(result)
            hits = await sandbox.hits()
    accepted = sorted(at for at, status in hits if status < 300)
    coverage = (result.structured_content or {})["coverage"]
    n = len(accepted)
    return RateRun(
        limit=limit,
        requests=n,
        rejected=sum(status == 429 for _, status in hits),
        span=accepted[-1] - accepted[0] if n > 1 else 0.0,
        ideal=60.0 * ((n - 1) // limit),
        wall=wall,
        complete=bool(coverage["complete"]),
    )
