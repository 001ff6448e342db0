"""Shared fixtures: the sandbox in process, and real servers (sandbox, hardal-mcp) as loopback subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest
from hypothesis import HealthCheck, settings
from mcp.client import Client

from hardal_mcp.config import Settings
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig, create_app
from hardal_mcp.server import build_server

ROOT = Path(__file__).resolve().parent.parent

# One Hypothesis profile for the whole suite, loaded before any test module is imported (so every
# `@settings(...)` inherits it). No deadline: timings on a shared 2-core CI machine are noise, and the
# first draw of a text strategy on a fresh checkout builds Hypothesis' Unicode cache (seconds), which
# otherwise trips the too_slow health check. Tests set only their own `max_examples`.
settings.register_profile("hardal", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hardal")
SANDBOX_URL = "http://sandbox.test"  # never resolved: requests go to the in-process ASGI app

# A closed window well in the past, so the sandbox's data for it never changes during a run.
WINDOW_END = date.today() - timedelta(days=10)
WINDOW_START = WINDOW_END - timedelta(days=2)
WINDOW = {"start_date": WINDOW_START.isoformat(), "end_date": WINDOW_END.isoformat()}


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"api_key": DEMO_API_KEY, "website_id": DEMO_WEBSITE_ID, "base_url": SANDBOX_URL}
    values.update({"store": "off", **overrides})  # no day store or shared budget unless a test asks
    return Settings.model_validate(values)


def sandbox_transport(config: SandboxConfig | None = None) -> httpx2.ASGITransport:
    return httpx2.ASGITransport(app=create_app(config or SandboxConfig(sessions_per_day=120)))


@asynccontextmanager
async def connect(settings: Settings | None = None, config: SandboxConfig | None = None) -> AsyncIterator[Client]:
    """An MCP client talking in memory to hardal-mcp, which talks to the sandbox in process.

    A context manager, not a fixture: the client's task group must be entered and left in one task."""
    server = build_server(settings or make_settings(), transport=sandbox_transport(config))
    async with Client(server) as mcp_client:
        yield mcp_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"process exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]


def spawn(args: list[str], port: int, env: dict[str, str] | None = None) -> Served:
    """Run `python -m hardal_mcp ARGS` and wait until it listens on `port`."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hardal_mcp", *args],
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
    except Exception:
        proc.kill()
        raise
    return Served(f"http://127.0.0.1:{port}", proc)


def stop(served: Served) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()
    if served.proc.stderr:
        served.proc.stderr.close()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and each server it starts as a subprocess) gets its own cache directory: a day store or
    rate budget left by one test never serves another, and nothing is written into the real home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Served]:
    """The fake Hardal API on a real loopback port."""
    port = free_port()
    served = spawn(["sandbox", "--port", str(port), "--sessions-per-day", "120"], port)
    yield served
    stop(served)


class FakeClock:
    """A clock the test moves (`now`); as a sleep, a wait moves it on instead of passing, and is recorded."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()
