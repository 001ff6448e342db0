"""The rate budget's files (see `hardal_mcp.budget`): never written through a symbolic link, nor used
unless they are this user's alone; never able to block a key for long, whatever they hold; and removed
once they count for nothing, without a process that is about to use one ever losing what it wrote."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import stat
from pathlib import Path

import pytest

from hardal_mcp import budget
from hardal_mcp.budget import MAX_HOLD, WINDOW, SharedRateLimiter, budget_path
from hardal_mcp.config import Settings

from .conftest import make_settings

OTHER_UID = 4242  # a local user other than us (the tests run as root, which may give files away)
EMPTY = {"hold": 0.0, "done": [], "flight": []}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fp(n: int) -> str:
    """A key fingerprint, as the client names keys (64 hex digits)."""
    return f"{n:064x}"


def settings_in(store: Path, **overrides: object) -> Settings:
    """Settings whose store lives in the directory `store`."""
    return make_settings(store=f"{store}{os.sep}", base_url="http://127.0.0.1:9", **overrides)


def entries(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_bytes()))


def snapshot(path: Path) -> tuple[bytes, int]:
    """A file's bytes and mode."""
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hardal_mcp.budget" and r.levelno >= logging.WARNING]


async def enter_and_leave(limiter: SharedRateLimiter) -> None:
    async with limiter.slot():
        pass


@pytest.fixture
def shared_store(tmp_path: Path) -> Path:
    """A store directory every local user may write (0777), as a careless shared set-up has it."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    return directory


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of ours that a budget file must never be turned into."""
    path = tmp_path / "victim-notes"
    path.write_bytes(b"the victim's own data\n")
    return path


# ------------------------------------------------------------------------------- only files of our own


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o777])
def test_budget_files_live_in_a_0700_directory_of_our_own_whatever_the_umask(shared_store: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        limiter = budget.shared_limiter(settings_in(shared_store), fp(1))
    finally:
        os.umask(previous)
    assert limiter is not None
    directory = limiter.path.parent.stat()
    assert limiter.path.parent != shared_store  # not among files that other users may replace
    assert stat.S_IMODE(directory.st_mode) == 0o700
    assert directory.st_uid == os.geteuid()
    assert stat.S_IMODE(limiter.path.stat().st_mode) == 0o600


def test_a_budget_file_planted_as_a_symlink_is_never_written_through(
    shared_store: Path, victim: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = snapshot(victim)
    settings = settings_in(shared_store)
    path = budget_path(settings, fp(1))
    assert path is not None
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.symlink_to(victim)  # planted before the victim's first call
    assert budget.shared_limiter(settings, fp(1)) is None  # the client keeps a budget of its own
    assert snapshot(victim) == before  # not even its mode changed
    assert any("symbolic link" in said for said in warnings(caplog))


async def test_a_budget_file_swapped_for_a_symlink_is_refused_from_then_on(
    tmp_path: Path, victim: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = budget.shared_limiter(settings_in(tmp_path / "store", rate_limit=5), fp(1))
    assert limiter is not None
    await enter_and_leave(limiter)
    before = snapshot(victim)
    limiter.path.unlink()
    limiter.path.symlink_to(victim)
    await enter_and_leave(limiter)
    await enter_and_leave(limiter)
    limiter.hold_until(None)
    assert limiter.available(0) == 0  # the hold is kept, in this process's own budget
    assert snapshot(victim) == before
    said = warnings(caplog)
    assert len(said) == 1 and "symbolic link" in said[0] and str(limiter.path) in said[0]


def spoil_file(path: Path, how: str, victim: Path) -> None:
    if how == "owned by another user":
        os.chown(path, OTHER_UID, OTHER_UID)
    elif how == "writable by others":
        path.chmod(0o666)
    elif how == "a hard link to another file":
        path.unlink()
        os.link(victim, path)
    else:
        path.unlink()
        os.mkfifo(path, 0o600)


@pytest.mark.parametrize(
    "how", ["owned by another user", "writable by others", "a hard link to another file", "a named pipe"]
)
async def test_a_budget_file_that_is_not_ours_alone_is_never_read_or_written(
    tmp_path: Path, victim: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_in(tmp_path / "store", rate_limit=5)
    path = budget_path(settings, fp(1))
    assert path is not None
    assert budget.shared_limiter(settings, fp(1)) is not None  # made, ours, usable
    path.write_bytes(b'{"hold": 0.0, "done": [], "flight": []}')
    spoil_file(path, how, victim)
    before = path.lstat()
    content = path.read_bytes() if stat.S_ISREG(before.st_mode) else None
    limiter = SharedRateLimiter(path, 5)
    await enter_and_leave(limiter)
    assert limiter.available(0) == 4  # counted in this process's own budget
    after = path.lstat()
    assert (after.st_ino, after.st_uid, after.st_mode) == (before.st_ino, before.st_uid, before.st_mode)
    if content is not None:
        assert path.read_bytes() == content
    assert len(warnings(caplog)) == 1
    assert budget.shared_limiter(settings, fp(1)) is None


@pytest.mark.parametrize("how", ["a symlink to a directory of ours", "owned by another user", "writable by others"])
def test_a_budget_directory_that_is_not_ours_alone_is_refused(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_in(tmp_path / "store")
    path = budget_path(settings, fp(1))
    assert path is not None
    directory = path.parent
    directory.parent.mkdir(parents=True, exist_ok=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if how == "a symlink to a directory of ours":
        directory.symlink_to(elsewhere, target_is_directory=True)
    else:
        directory.mkdir(mode=0o700, exist_ok=True)
        if how == "owned by another user":
            os.chown(directory, OTHER_UID, OTHER_UID)
        else:
            directory.chmod(0o777)
    assert budget.shared_limiter(settings, fp(1)) is None
    assert not path.exists()
    assert files(elsewhere) == []
    said = warnings(caplog)
    assert len(said) == 1 and str(directory) in said[0]


# ------------------------------------------------------------------------ nothing read blocks for long


def test_a_poisoned_hold_is_cut_to_the_longest_hold(tmp_path: Path) -> None:
    path = tmp_path / "budget" / fp(1)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b'{"hold": 99999999999.0, "done": [], "flight": []}')
    clock = Clock()
    limiter = SharedRateLimiter(path, 5, clock=clock)
    assert limiter.held() == MAX_HOLD
    assert entries(path)["hold"] == clock.now + MAX_HOLD  # written back cut
    clock.now += MAX_HOLD
    assert limiter.available(0) == 5


def test_entries_read_are_dated_no_later_than_now_and_kept_no_longer_than_they_count(tmp_path: Path) -> None:
    path = tmp_path / "budget" / fp(1)
    path.parent.mkdir(mode=0o700)
    far = 1e308  # the largest finite time JSON can carry
    path.write_bytes(json.dumps({"hold": 0, "done": [far, 999_990.0], "flight": [["t", "elsewhere", 7, far]]}).encode())
    clock = Clock()
    limiter = SharedRateLimiter(path, 3, clock=clock, request_timeout=30.0)
    assert limiter.available(0) == 0  # two answers and one request in flight
    assert entries(path) == {"hold": 0.0, "done": [999_990.0, clock.now], "flight": [["t", "elsewhere", 7, clock.now]]}
    clock.now += 50
    assert limiter.available(0) == 1  # the answer of 999,990 has left the window
    clock.now += 10
    assert limiter.available(0) == 2  # the one "from the future" counted as answered when first read
    clock.now += 30
    assert limiter.available(0) == 3  # the request "started in the future": timeout + a minute after it was read


def test_lists_read_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "budget" / fp(1)
    path.parent.mkdir(mode=0o700)
    clock = Clock()
    many = budget.MAX_ENTRIES + 10
    done = [clock.now - 30 + i / many for i in range(many)]
    flight = [[str(i), "elsewhere", 7, clock.now] for i in range(many)]
    path.write_bytes(json.dumps({"hold": 0, "done": done, "flight": flight}).encode())
    limiter = SharedRateLimiter(path, 100, clock=clock)
    assert limiter.available(0) == 0
    kept = entries(path)
    assert kept["done"] == done[-budget.MAX_ENTRIES :]  # the newest: they stay longest
    assert len(kept["flight"]) == budget.MAX_ENTRIES  # type: ignore[arg-type]


def test_no_configurable_rate_limit_needs_more_entries_than_are_kept() -> None:
    make_settings(rate_limit=budget.MAX_ENTRIES)
    with pytest.raises(ValueError, match="rate_limit"):
        make_settings(rate_limit=budget.MAX_ENTRIES + 1)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00garbage{",
        b'{"hold": 1e999, "done": [], "flight": []}',  # not a finite number
        b'{"hold": 0, "done": ["soon"], "flight": []}',
        b'{"hold": 0, "done": [], "flight": [["t", "HOST", 1099511627776, 1.0]]}',  # no such pid
        b'{"hold": 0, "done": [], "flight": [["t", "HOST", 0, 1.0]]}',  # 0 is no process
    ],
)
def test_a_file_that_is_not_a_budget_is_reset_with_a_warning(
    tmp_path: Path, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "budget" / fp(1)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(raw.replace(b"HOST", socket.gethostname().encode()))
    limiter = SharedRateLimiter(path, 4, clock=Clock())
    assert limiter.available(0) == 4
    assert entries(path) == EMPTY
    said = warnings(caplog)
    assert len(said) == 1 and str(path) in said[0]


# ----------------------------------------------------------------------------------- no piling up


async def test_files_of_keys_idle_past_the_window_are_removed_when_a_new_key_comes(tmp_path: Path) -> None:
    clock = Clock()
    settings = settings_in(tmp_path / "store")
    for n in range(150):  # junk keys, each used once
        limiter = budget.shared_limiter(settings, fp(n), clock=clock)
        assert limiter is not None
        await enter_and_leave(limiter)
    directory = limiter.path.parent
    assert len(files(directory)) == 150  # all still count within the minute
    clock.now += WINDOW
    assert budget.shared_limiter(settings, fp(150), clock=clock) is not None
    assert files(directory) == [fp(150)]


def test_the_sweep_runs_at_most_once_a_minute_per_process(tmp_path: Path) -> None:
    clock = Clock()
    settings = settings_in(tmp_path / "store")
    first = budget.shared_limiter(settings, fp(0), clock=clock)  # never used: counts for nothing
    assert first is not None
    clock.now += budget.SWEEP_EVERY - 1
    assert budget.shared_limiter(settings, fp(1), clock=clock) is not None
    assert files(first.path.parent) == [fp(0), fp(1)]  # no sweep yet
    clock.now += 1
    assert budget.shared_limiter(settings, fp(2), clock=clock) is not None
    assert files(first.path.parent) == [fp(2)]


async def test_a_sweep_keeps_every_file_that_still_counts_or_is_in_use(tmp_path: Path) -> None:
    clock = Clock()
    directory = tmp_path / "budget"
    idle, answered, held, flying, locked = (SharedRateLimiter(directory / fp(n), 5, clock=clock) for n in range(5))
    await enter_and_leave(idle)
    clock.now += 30
    await enter_and_leave(answered)
    held.hold_until(clock.now + 200)
    assert locked.available(0) == 5  # made, and empty
    clock.now += 31  # the idle key's answer has left the window; the other's has not
    other_process = os.open(locked.path, os.O_RDWR)
    try:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        async with flying.slot():
            budget.sweep(directory, request_timeout=30.0, clock=clock)
    finally:
        os.close(other_process)
    assert files(directory) == [fp(1), fp(2), fp(3), fp(4)]
    assert entries(answered.path)["done"] == [1_000_030.0]  # untouched


async def test_beyond_the_cap_the_quiet_files_go_least_recently_answered_first(tmp_path: Path) -> None:
    clock = Clock()
    directory = tmp_path / "budget"
    quiet = [SharedRateLimiter(directory / fp(n), 5, clock=clock) for n in (4, 2, 0, 3)]  # answered in this order
    for limiter in quiet:
        await enter_and_leave(limiter)
        clock.now += 1
    SharedRateLimiter(directory / fp(1), 5, clock=clock).hold_until(clock.now + 100)
    budget.sweep(directory, request_timeout=30.0, clock=clock, max_files=3)
    assert files(directory) == [fp(0), fp(1), fp(3)]  # the held one, and the two answered last


async def test_a_file_removed_while_a_process_waits_for_its_lock_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep removes an idle file between another process's open and its lock: that process must not
    write its request into the removed file, where no other process would see it."""
    clock = Clock()
    path = tmp_path / "budget" / fp(1)
    limiter = SharedRateLimiter(path, 5, clock=clock)
    assert limiter.available(0) == 5  # the file exists and counts for nothing
    swept: list[bool] = []
    lock = budget._lock

    def sweep_then_lock(fd: int, *, wait: bool = True) -> bool:
        if wait and not swept:
            swept.append(True)
            budget.sweep(path.parent, request_timeout=30.0, clock=clock)
            assert not path.exists()
        return lock(fd, wait=wait)

    monkeypatch.setattr(budget, "_lock", sweep_then_lock)
    async with limiter.slot():
        assert swept
        assert len(entries(path)["flight"]) == 1  # type: ignore[arg-type]
        assert SharedRateLimiter(path, 5, clock=clock).available(0) == 4  # another process sees it
    assert entries(path)["done"] == [clock.now]
