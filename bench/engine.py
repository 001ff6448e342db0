"""Answers from the day store (issue 14): 28 closed days of a busy site asked again after a restart,
with no upstream request but the key's check, by `hardal-mcp --transport http` in its own process.

    python -m bench.engine [--sessions-per-day 15000] [--runs 3] [--legacy PATH]

The store is filled by the server itself (a summary of the window, then its background fill, against a
sandbox without a rate limit), so the same steps fill any version's store. Then a new server process (a
restart) answers the window with no segment and with one (device = Mobile, country in three values):
wall time at the client, the server's CPU time and its peak RSS growth over the call (from /proc, reset
before each call), the median of `--runs`. A one-day summary of another window first loads every code
path. `--legacy PATH` measures a checkout of another version (e.g. `git worktree add /tmp/legacy
<commit>`) the same way in the same run, side by side: `python -m hardal_mcp` started in that checkout
runs its code. Prints one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from mcp.client import Client

from bench.context import text_of
from bench.procs import cpu_seconds, peak_rss_growth, reset_peak_rss
from bench.scan import SandboxProcess, ServerProcess, server_env

DAYS = 28
SEGMENT = {"device": "Mobile", "country": ["Germany", "Turkey", "United States"]}


def window() -> tuple[date, date]:
    """28 days that ended at least 48 hours ago in UTC: closed, so the store keeps and serves them."""
    last = datetime.now(UTC).date() - timedelta(days=3)
    return last - timedelta(days=DAYS - 1), last


def args(start: date, end: date, **extra: Any) -> dict[str, Any]:
    return {"start_date": start.isoformat(), "end_date": end.isoformat(), "timezone": "UTC", **extra}


def stored_days(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM days").fetchone()[0])
    except sqlite3.Error:
        return 0


def env_for(sandbox: SandboxProcess, store: Path) -> dict[str, str]:
    env = server_env(
        sandbox,
        HARDAL_STORE=str(store),
        HARDAL_RATE_LIMIT="100000",
        HARDAL_TOOL_TIMEOUT="600",
        HARDAL_PAGE_SIZE="1000",
    )
    return env


async def fill(sandbox: SandboxProcess, store: Path, legacy: Path | None) -> float:
    """Let a server fill the store with the window's days; seconds it took."""
    start, end = window()
    began = time.perf_counter()
    with ServerProcess(env_for(sandbox, store), cwd=legacy) as server:
        async with Client(server.mcp_url) as client:
            text_of(await client.call_tool("summarize_sessions", args(start, end, max_sessions=200_000)))
            while stored_days(store) < DAYS:  # the background fill stores the days the read could not keep
                if time.perf_counter() - began > 1200:
                    raise RuntimeError(f"the store holds {stored_days(store)} of {DAYS} days after 20 minutes")
                await asyncio.sleep(2.0)
    return time.perf_counter() - began


async def answers(sandbox: SandboxProcess, store: Path, legacy: Path | None, runs: int) -> dict[str, Any]:
    start, end = window()
    warm = start - timedelta(days=40)
    out: dict[str, Any] = {}
    with ServerProcess(env_for(sandbox, store), cwd=legacy) as server:
        async with Client(server.mcp_url) as client:
            text_of(await client.call_tool("summarize_sessions", args(warm, warm, max_sessions=1000)))
            for name, extra in (("no segment", {}), ("segment", {"segment": SEGMENT})):
                walls, cpus, rss = [], [], []
                before = len(await sandbox.hits())
                sessions = 0
                for _ in range(runs):
                    cpu, peak = cpu_seconds(server.pid), reset_peak_rss(server.pid)
                    wall = time.perf_counter()
                    question = args(start, end, max_sessions=200_000, **extra)
                    result = await client.call_tool("summarize_sessions", question)
                    walls.append(time.perf_counter() - wall)
                    cpus.append(cpu_seconds(server.pid) - cpu)
                    rss.append(peak_growth_mb(peak, server.pid))
                    coverage = (result.structured_content or {})["coverage"]
                    sessions = int(coverage["scanned"])
                    assert coverage["complete"], text_of(result)
                out[name] = {
                    "wall": statistics.median(walls),
                    "cpu": statistics.median(cpus),
                    "rss_mb": statistics.median(rss),
                    "walls": walls,
                    "sessions": sessions,
                    "requests": len(await sandbox.hits()) - before,
                }
    return out


def peak_growth_mb(before: int, pid: int) -> float:
    return peak_rss_growth(before, pid) / 2**20


async def measure(per_day: int, runs: int, legacy: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {"load_start": os.getloadavg()[0], "sessions_per_day": per_day}
    with SandboxProcess(per_day) as sandbox, tempfile.TemporaryDirectory(prefix="hardal-engine-") as tmp:
        for label, code in (("this", None), ("legacy", legacy)):
            if label == "legacy" and code is None:
                continue
            store = Path(tmp) / label / "store.sqlite3"
            store.parent.mkdir()
            print(f"[engine] {label}: filling the store", file=sys.stderr, flush=True)
            filled = await fill(sandbox, store, code)
            print(f"[engine] {label}: filled in {filled:.0f} s; asking", file=sys.stderr, flush=True)
            results[label] = await answers(sandbox, store, code, runs)
            results[label]["fill_s"] = filled
            results[label]["store_bytes"] = store.stat().st_size
    results["load_end"] = os.getloadavg()[0]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions-per-day", type=int, default=15_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--legacy", type=Path, help="a checkout of another version, measured the same way")
    parsed = parser.parse_args()
    print(json.dumps(asyncio.run(measure(parsed.sessions_per_day, parsed.runs, parsed.legacy)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
