"""A real `redis-server` for tests: on a free loopback port, with a password (so tests can check that it never
shows), nothing written to disk, killed and started again on the same port for fault tests.

Skipped only where the binary is missing and `CI` is unset; in CI a missing binary fails the test."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .conftest import free_port, wait_for_port

PASSWORD = "s3cret-redis-pw-7f3a"  # the test server's own, to prove it never reaches a log


class RedisServer:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for_port(self.port, self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: .ci/run installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A fresh redis-server for the block (skipped or failed as the module docstring says when missing)."""
    server = RedisServer(redis_binary())
    server.start()
    try:
        yield server
    finally:
        server.kill()
