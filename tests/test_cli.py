"""The command line as a newcomer and an operator use it: one-shot calls on demo data, --check, and
configuration errors that name what to fix without ever printing the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from hardal_mcp.cli import parse_arguments
from hardal_mcp.config import Settings
from hardal_mcp.errors import HardalError

from .conftest import ROOT, Served, free_port, spawn, stop

SECRET = "hk_live_CLI_SECRET_9f8e7d6c5b4a"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    return subprocess.run(
        [sys.executable, "-m", "hardal_mcp", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_call_on_demo_data_prints_a_digest() -> None:
    done = run("call", "summarize_sessions", "--demo", "timeframe=yesterday")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Sessions of demo · yesterday:")
    assert "bounce" in done.stdout


def test_demo_keeps_nothing_on_disk_unless_asked(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    done = run("call", "summarize_sessions", "--demo", "timeframe=last7days", env={"XDG_CACHE_HOME": str(cache)})
    assert done.returncode == 0, done.stderr
    assert not cache.exists()  # no day store, no budget file: the demo's data is made in process
    kept = tmp_path / "kept.sqlite3"
    done = run("call", "summarize_sessions", "--demo", "timeframe=last7days", env={"HARDAL_STORE": str(kept)})
    assert done.returncode == 0, done.stderr
    assert kept.exists()


def test_call_json_prints_structured_content_and_json_arguments_are_parsed() -> None:
    done = run("call", "list_sessions", "--demo", "--json", "limit=2", 'segment={"device": ["desktop"]}')
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["page"]["returned"] == 2
    assert {s["device"] for s in data["sessions"]} == {"Desktop"}


def test_call_with_a_bad_argument_exits_non_zero_and_names_it() -> None:
    done = run("call", "summarize_sessions", "--demo", "timeframe=fortnight")
    assert done.returncode == 1
    assert "timeframe" in done.stdout


def hardal_mcp_with_stdout_closed(*args: str) -> subprocess.Popen[bytes]:
    """`python -m hardal_mcp ARGS` whose reader of stdout has gone before it writes (like `| head -c 10`)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hardal_mcp", *args],
        cwd=ROOT,
        env=base,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # start-up takes far longer than this: nothing has been written yet
    return proc


@pytest.mark.parametrize(
    "arguments",
    [
        ["summarize_sessions"],  # a few KB: fails when stdout is flushed, at exit
        ["list_sessions", "limit=200"],  # ~15 KB: fails in print()
    ],
)
def test_call_into_a_closed_pipe_exits_quietly(arguments: list[str]) -> None:
    proc = hardal_mcp_with_stdout_closed("call", arguments[0], "--demo", *arguments[1:])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err  # 128 + SIGPIPE, as `yes | head` reports
    assert err == b""  # no traceback, no "Exception ignored", no BrokenPipeError


def test_stdio_server_whose_client_stops_reading_exits_quietly() -> None:
    proc = hardal_mcp_with_stdout_closed("--demo")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    # The server answers initialize before it acts on the end of its input, so the answer meets the closed
    # pipe. (The SDK's reader blocks on stdin in a thread: the server ends only once stdin ends too.)
    _, err = proc.communicate(json.dumps(initialize).encode() + b"\n", timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    assert b"BrokenPipe" not in err


def test_parse_arguments() -> None:
    assert parse_arguments(["limit=5", "page=/cart", "flag=true", "x="]) == {
        "limit": 5,
        "page": "/cart",
        "flag": True,
        "x": "",
    }
    with pytest.raises(HardalError, match="name=value"):
        parse_arguments(["oops"])


def test_check_reports_every_setting_and_the_sessions_of_the_last_week(sandbox_server: Served) -> None:
    env = {"HARDAL_API_KEY": "demo-key", "HARDAL_WEBSITE_ID": "demo", "HARDAL_BASE_URL": sandbox_server.url}
    done = run("--check", env=env)
    assert done.returncode == 0, done.stderr
    assert "API          reachable, key accepted, website found" in done.stdout
    assert "sessions" in done.stdout
    assert "demo-key" not in done.stdout + done.stderr


def test_check_fails_clearly_on_a_rejected_key_without_printing_it(sandbox_server: Served) -> None:
    env = {"HARDAL_API_KEY": SECRET, "HARDAL_WEBSITE_ID": "demo", "HARDAL_BASE_URL": sandbox_server.url}
    done = run("--check", "--log-level", "debug", env=env)
    assert done.returncode == 1
    assert "HARDAL_API_KEY" in done.stdout
    assert "401" in done.stdout
    assert SECRET not in done.stdout + done.stderr


def test_check_names_missing_settings() -> None:
    done = run("--check")
    assert done.returncode == 1
    assert "MISSING — set HARDAL_API_KEY" in done.stdout
    assert "MISSING — set HARDAL_WEBSITE_ID" in done.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HARDAL_TIMEOUT", "soon"),
        ("HARDAL_TIMEZONE", "Moon/Base"),
        ("HARDAL_BASE_URL", "ftp://x"),
        ("HARDAL_PAGE_SIZE", "5000"),
    ],
)
def test_invalid_configuration_names_the_variable_and_never_the_key(variable: str, value: str) -> None:
    done = run("--check", env={"HARDAL_API_KEY": SECRET, variable: value})
    assert done.returncode == 2
    assert variable in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_the_key_is_hidden_in_settings_repr() -> None:
    settings = Settings.from_env({"HARDAL_API_KEY": SECRET, "HARDAL_MCP_TOKEN": SECRET + "x"})
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()


async def test_sandbox_serves_a_chosen_fault_to_one_website() -> None:
    port = free_port()
    served = spawn(["sandbox", "--port", str(port), "--fault", "broken=503-always"], port)
    try:
        async with httpx2.AsyncClient(base_url=served.url, headers={"Authorization": "Bearer demo-key"}) as http:
            broken = await http.get("/api/websites/broken/sessions", params={"timeframe": "today"})
            healthy = await http.get("/api/websites/demo/sessions", params={"timeframe": "today", "limit": 1})
        assert broken.status_code == 503
        assert healthy.status_code == 200
    finally:
        stop(served)


def test_an_unknown_fault_is_refused_with_the_choices() -> None:
    done = run("sandbox", "--fault", "gremlins")
    assert done.returncode == 2
    assert "unknown fault 'gremlins'" in done.stderr
    assert "503-burst" in done.stderr
