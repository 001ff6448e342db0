"""Over stdio, as a host runs it: cold start (spawn → initialize + tools/list) and warm call latency,
hardal-mcp against a bare one-tool MCPServer on the same SDK, measured in the same run, interleaved."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import ListToolsResult

from bench.procs import ROOT, children, cpu_seconds

BARE = Path(__file__).resolve().parent / "bare_server.py"


def hardal_params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "hardal_mcp"], env=env, cwd=ROOT)


def bare_params() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(BARE)], cwd=ROOT)


async def cold_start(params: StdioServerParameters) -> tuple[float, ListToolsResult]:
    """Seconds from spawning the server to holding its tools/list answer (the handshake included)."""
    started = time.perf_counter()
    async with Client(params) as client:
        listed = await client.list_tools()
        elapsed = time.perf_counter() - started
    return elapsed, listed


@dataclass
class Latency:
    samples: list[float]  # seconds per call
    server_cpu: float  # the server process's CPU seconds per call
    client_cpu: float  # this process's (the SDK client's) CPU seconds per call

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]  # nearest rank


async def warm_latency(params: StdioServerParameters, tool: str, arguments: dict[str, Any], calls: int) -> Latency:
    """Per-call latency of `calls` identical calls after a warm-up (which fills the server's caches)."""
    before = set(children())
    async with Client(params) as client:
        (server,) = set(children()) - before  # the stdio server the client spawned
        for _ in range(5):
            result = await client.call_tool(tool, arguments)
            if result.is_error:
                raise RuntimeError(f"{tool} failed: {result.content}")
        samples = []
        cpu, own = cpu_seconds(server), time.process_time()
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool(tool, arguments)
            samples.append(time.perf_counter() - started)
        cpu, own = cpu_seconds(server) - cpu, time.process_time() - own
    return Latency(samples, cpu / calls, own / calls)


def import_offenders(limit: int = 6) -> list[tuple[str, float]]:
    """Modules that `import hardal_mcp.server` (what the stdio server loads) adds to a bare MCPServer's
    imports, biggest self time first, from `python -X importtime` (ms)."""

    def self_times(statement: str) -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, cwd=ROOT, check=True
        )
        times: dict[str, float] = {}
        for line in out.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
            if match:
                times[match.group(3)] = int(match.group(1)) / 1000
        return times

    bare = self_times("import mcp.server.mcpserver")
    ours = self_times("import hardal_mcp.cli, hardal_mcp.server")
    extra = {name: ms for name, ms in ours.items() if name not in bare}
    return sorted(extra.items(), key=lambda item: -item[1])[:limit]
