"""Answers from the day store (issue 14): 28 closed days of a busy site asked again after a restart,
with no upstream request but the key's check, by `hardal-mcp --transport http` in its own process.

    python -m bench.engine [--sessions-per-day 15000] [--runs 3] [--legacy PATH]

The store is filled by the server itself (a summary of the window, then its background fill, against a
sandbox without a rate limit), so the same steps fill any version's store. Then a new server process (a
restart) answers the window with no segment and with one (device = Mobile, country in three values):
wall time at the client, the server's CPU time and its peak RSS growth over the call (from /proc, reset
before each call), the median of `--runs` (RSS: the largest). A summary of the window's last day, from the
store too, first loads every code path. `--legacy PATH` measures a checkout of another version (e.g.
`git worktree add /tmp/legacy <commit>`) the same way in the same run, side by side: `python -m
hardal_mcp` started in that checkout runs its code. Prints one JSON object."""

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
from bench.procs import SandboxProcess, cpu_seconds, peak_rss_growth, reset_peak_rss
from bench.report import Row, num
from bench.scan import ServerProcess, server_env

DAYS = 28
PER_DAY = 15_000
TITLE = "Answers from the day store: the columnar engine (issue 14)"
INTRO = (
    "28 closed days of a site with about 15,000 sessions a day, answered after a restart from the day store "
    "(no upstream request but the key's check), by `hardal-mcp --transport http` in its own process; beside "
    "it, the same steps run by an earlier checkout (`--legacy`), in the same run against the same sandbox."
)
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
    out: dict[str, Any] = {}
    with ServerProcess(env_for(sandbox, store), cwd=legacy) as server:
        async with Client(server.mcp_url) as client:
            # One stored day first: every code path of a store-served answer is loaded (code pages count in RSS)
            text_of(await client.call_tool("summarize_sessions", args(end, end)))
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
                    rss.append(peak_growth_mb(peak, server.pid))  # the first call's is the peak
                    coverage = (result.structured_content or {})["coverage"]
                    sessions = int(coverage["scanned"])
                    assert coverage["complete"], text_of(result)
                out[name] = {
                    "wall": statistics.median(walls),
                    "cpu": statistics.median(cpus),
                    "rss_mb": max(rss),
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


def rows_and_notes(results: dict[str, Any]) -> tuple[list[Row], list[str]]:
    ours, old = results["this"], results.get("legacy")

    def other(label: str, key: str, digits: int = 2, scale: float = 1.0) -> str:
        return "—" if old is None else num(old[label][key] * scale, digits)

    plain, segment = ours["no segment"], ours["segment"]
    sessions = plain["sessions"]
    per_session = ours["store_bytes"] / sessions
    rows = [
        Row(f"{DAYS} closed days ({num(sessions)} sessions) from the store, no segment: wall (s)",
            num(plain["wall"], 2), other("no segment", "wall"), goal="≤ 1.0", met=plain["wall"] <= 1.0),
        Row("… server CPU (s)", num(plain["cpu"], 2), other("no segment", "cpu")),
        Row("… sessions per second of server CPU", num(sessions / plain["cpu"]),
            "—" if old is None else num(sessions / old["no segment"]["cpu"])),
        Row("… with a segment (device + country list): wall (s)", num(segment["wall"], 2),
            other("segment", "wall"), goal="≤ 1.0", met=segment["wall"] <= 1.0),
        Row("… peak RSS growth, first call after the restart (MB)", num(plain["rss_mb"], 1),
            other("no segment", "rss_mb", 1), goal="≤ 150", met=plain["rss_mb"] <= 150),
        Row("… upstream requests", f"{plain['requests']} / {segment['requests']}",
            "—" if old is None else f"{old['no segment']['requests']} / {old['segment']['requests']}",
            goal="0"),
        Row("store bytes per session (file on disk)", num(per_session, 1),
            "—" if old is None else num(old["store_bytes"] / old["no segment"]["sessions"], 1),
            goal="≤ 40", met=per_session <= 40),
    ]  # fmt: skip
    notes = [
        f"Load average (1 min): {results['load_start']:.2f} at the start of the section, "
        f"{results['load_end']:.2f} at its end (2 cores: other work slows both columns).",
        "Wall is at the MCP client, median of the runs: "
        + "; ".join(
            f"{label} {', '.join(num(w, 2) for w in runs[q]['walls'])} s ({q})"
            for label, runs in (("this", ours), ("legacy", old))
            if runs is not None
            for q in ("no segment", "segment")
        )
        + ". Server CPU is the server process's (utime + stime, Polars' threads included), peak RSS growth "
        "its VmHWM after a clear_refs reset just before the call, the largest of the runs (the first call "
        "after the restart: later calls reuse memory the first one freed). Before them, the server answered "
        "the window's last day from the store, which loads every code path (a library's code pages count "
        "in RSS when first touched).",
        f"The store was filled by each version's own server: a summary of the window, then its background fill "
        f"({num(ours['fill_s'])} s"
        + ("" if old is None else f"; legacy {num(old['fill_s'])} s")
        + "), against a sandbox without a rate limit. The key's check is one request (a fresh process must "
        "see Hardal accept the key before it serves stored days).",
    ]
    return rows, notes


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions-per-day", type=int, default=PER_DAY)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--legacy", type=Path, help="a checkout of another version, measured the same way")
    parsed = parser.parse_args()
    print(json.dumps(asyncio.run(measure(parsed.sessions_per_day, parsed.runs, parsed.legacy)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
