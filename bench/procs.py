"""Child processes on loopback and what they cost: ports, spawning, CPU time and peak RSS from /proc; the
sandbox as one (`bench.sandbox_proc`), with its traffic record."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Self

import httpx2

from hardal_mcp.sandbox import DEMO_WEBSITE_ID

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """A `python -m …` child listening on a loopback port; stderr goes to a temporary file."""

    def __init__(
        self,
        args: list[str],
        port: int,
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
        cwd: Path | None = None,  # where `python -m` finds the package: another checkout runs its own code
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd or ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        try:
            self._wait(timeout)
        except Exception:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args!r} exited with {self.proc.returncode}: {self.stderr()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"nothing listening on 127.0.0.1:{self.port} after {timeout} s: {self.stderr()}")

    def stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-8000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)


def children(parent: int | None = None) -> list[int]:
    """Pids of the live child processes of `parent` (default: this process), from /proc."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def _status(pid: int | str, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


def reset_peak_rss(pid: int | str = "self") -> int:
    """Reset the process's peak RSS (VmHWM) to its current RSS, and return that RSS in bytes.

    Writing 5 to /proc/PID/clear_refs does it (Linux ≥ 4.0; our own children, or root). Where that is
    refused the peak stays the process's lifetime peak, so the growth reported can only be larger."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status(pid, "VmRSS")


def peak_rss_growth(before: int, pid: int | str = "self") -> int:
    """Bytes the peak RSS rose above `before` (from `reset_peak_rss`)."""
    return _status(pid, "VmHWM") - before


class SandboxProcess(Child):
    def __init__(
        self,
        sessions_per_day: int,
        rate_limit: int | None = None,
        now: datetime | None = None,
        more_keys: tuple[str, ...] = (),
    ) -> None:
        port = free_port()
        args = ["-m", "bench.sandbox_proc", "--port", str(port), "--sessions-per-day", str(sessions_per_day)]
        args += ["--rate-limit", str(rate_limit)] if rate_limit else []
        args += ["--more-keys", ",".join(more_keys)] if more_keys else []
        args += ["--now", now.isoformat()] if now is not None else []
        super().__init__(args, port)

    async def hits(self, website_id: str = DEMO_WEBSITE_ID) -> list[tuple[float, int]]:
        """(arrival time, status) of every request this website id was sent, in arrival order."""
        async with httpx2.AsyncClient(base_url=self.url) as http:
            response = await http.get(f"/_bench/traffic/{website_id}")
            response.raise_for_status()
            return [(hit[0], hit[1]) for hit in response.json()["hits"]]
