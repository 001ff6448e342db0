"""One rate budget per API key, shared by every hardal-mcp process of this user on the machine.

Hardal allows about 100 requests per minute per key, whoever sends them. Two servers with the same key
(a desktop host and a CLI call, two editor windows) each keeping to HARDAL_RATE_LIMIT on their own would
together send twice that. `SharedRateLimiter` keeps one sliding 60-second window per key fingerprint in a
small file, `<store dir>/budget/<fingerprint>` (mode 0600), read and rewritten under an exclusive
`fcntl.flock` for the few microseconds each decision takes. The file names the key only by its
fingerprint and holds JSON: `hold` (the Unix time before which no process may start a request; 0 for
none), `done` (the times of the answers still in the window) and `flight` (the requests in flight, as
`[token, host, pid, start]`). It keeps `ratelimit.RateLimiter`'s rules:

* a request holds its slot while in flight, and is then dated by the moment its answer came (never
  earlier than the moment Hardal counted it);
* times are wall-clock (`time.time`): monotonic clocks are not comparable between processes;
* a process that dies mid-request cannot hold a slot for ever: its in-flight entry counts as answered at
  the moment its death is noticed (same host, pid gone), and any in-flight entry older than the request
  timeout + 60 s is dropped (by then Hardal's window has forgotten it, whatever became of it);
* after a 429, `hold` makes every process sharing the file wait (for Retry-After, or when there is none,
  until the oldest request of the window leaves it: the window is taken to be full).

The files are this user's alone. They live in a directory of their own, created 0700 whatever the umask.
That directory and each file are opened without following a symbolic link, and once open must be a
directory (a regular file with no other hard link) owned by this user that neither group nor others may
write; they are then set to 0700 (0600). Anything else is refused, said once on stderr and never read or
written again: the process keeps its own `ratelimit.RateLimiter` instead.

Nothing read from a file can block a key for ever. Each decision clamps what it reads: a hold to at most
MAX_HOLD from now, answer and start times to no later than now, answers to the window, each list to
MAX_ENTRIES (no HARDAL_RATE_LIMIT needs more). A file that is not a budget at all (garbage, numbers out of
range, wrong types) is started afresh, with a warning.

The files do not pile up. When a process makes a new key's limiter, at most once a minute (SWEEP_EVERY),
it removes the files that count for nothing (no hold pending, no answer within the window, nothing in
flight), then, while more than MAX_FILES remain, those with nothing pending, least recently answered
first. A file is removed only under its lock, and left alone while another process holds that lock. A
process that opened a file just before it was removed notices once it has the lock (the path no longer
names the file it opened) and opens the path again, so no state is ever written where nobody reads it.

Where `fcntl` does not exist (Windows), or the directory cannot be written, each process keeps its own
`ratelimit.RateLimiter`."""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import re
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson

from .config import Settings
from .files import private_directory

# The interface and the window arithmetic live in `ratelimit`; named here too for the callers of old.
from .ratelimit import MAX_HOLD as MAX_HOLD
from .ratelimit import START_BY as START_BY
from .ratelimit import WINDOW as WINDOW
from .ratelimit import Limiter as Limiter
from .ratelimit import RateLimiter
from .ratelimit import count_available as count_available
from .ratelimit import too_late as too_late

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL = 0.25  # seconds between looks at the file while only requests in flight hold the slots
# Answers, and requests in flight, a file keeps: HARDAL_RATE_LIMIT's largest value. A process with a smaller
# limit must not drop entries that one with a larger limit still counts.
MAX_ENTRIES = 100_000
MAX_FILES = 1000  # budget files kept beyond this only while they hold something pending
SWEEP_EVERY = 60.0  # seconds between two sweeps of one directory by one process
REOPENS = 10  # times a file removed between open and lock is opened again before giving up
DIRECTORY = "budget"  # in the store directory
_FINGERPRINT = re.compile(r"[0-9a-f]{1,64}")
_MAX_PID = 2**31 - 1  # pid_t; a larger one would overflow os.kill

if sys.platform != "win32":
    import fcntl

    HAVE_FLOCK = True
    # Never through a symbolic link; a named pipe planted instead of a file cannot block the open.
    _OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

    def _lock(fd: int, *, wait: bool = True) -> bool:
        """Lock `fd` exclusively, until it is closed; False if `wait` is off and another holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

else:  # pragma: no cover - exercised on Windows only
    HAVE_FLOCK = False


class UnsafeFile(Exception):
    """A budget file or directory that is not this user's alone: never read or written."""


@dataclass
class _State:
    """The shared file: when everyone may send again, answer times, and requests in flight
    (`[token, host, pid, start]`)."""

    hold: float = 0.0
    done: list[float] = field(default_factory=list)
    flight: list[list[Any]] = field(default_factory=list)

    def dump(self) -> bytes:
        return orjson.dumps({"hold": self.hold, "done": self.done, "flight": self.flight})

    @classmethod
    def load(cls, raw: bytes) -> _State | None:
        """The state in `raw` (empty: a new file), or None if it is not one."""
        if not raw.strip():
            return cls()
        try:
            data = orjson.loads(raw)
            hold, done, flight = data["hold"], data["done"], data["flight"]
            if (
                type(hold) not in (int, float)
                or not all(type(t) in (int, float) for t in done)
                or not all(
                    type(e) is list
                    and len(e) == 4
                    and type(e[0]) is str
                    and type(e[1]) is str
                    and type(e[2]) is int
                    and 0 < e[2] <= _MAX_PID
                    and type(e[3]) in (int, float)
                    for e in flight
                )
            ):
                return None
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return None
        return cls(float(hold), sorted(map(float, done)), flight)


@dataclass(frozen=True)
class _Rules:
    """What still counts in a file: answers within `window`, requests in flight for up to `stale_after`
    seconds, unless their process (on this `host`) has died."""

    window: float
    stale_after: float
    host: str

    def prune(self, state: _State, now: float) -> None:
        """Drop what no longer counts, and clamp the rest, whoever wrote it: nothing is dated after now (a
        clock set back must not make entries live longer), no hold outlasts MAX_HOLD from now."""
        state.hold = min(state.hold, now + MAX_HOLD) if state.hold > now else 0.0
        died = 0
        kept = []
        for token, host, pid, started in state.flight:
            started = min(started, now)
            if now - started >= self.stale_after:
                continue  # whatever became of it, Hardal's window has forgotten it
            if host == self.host and pid != os.getpid() and not _alive(pid):
                died += 1  # its process died mid-request: count it as answered now
                continue
            kept.append([token, host, pid, started])
        state.flight = kept[-MAX_ENTRIES:]
        state.done = ([min(t, now) for t in state.done if now - t < self.window] + [now] * died)[-MAX_ENTRIES:]

    @staticmethod
    def idle(state: _State) -> bool:
        """Counts for nothing: the file may go."""
        return not state.hold and not state.done and not state.flight

    @staticmethod
    def quiet(state: _State) -> bool:
        """Nothing pending (hold or request in flight): only its answers would be forgotten."""
        return not state.hold and not state.flight


class SharedRateLimiter:
    """At most `per_minute` requests of one key in any sliding 60 s window, counted over every process that
    shares `path` (see the module docstring). Same interface as `ratelimit.RateLimiter`."""

    def __init__(
        self,
        path: Path,
        per_minute: int,
        *,
        request_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        window: float = WINDOW,  # seconds; Hardal's is a minute (tests shorten it)
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.path = path
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep  # how a full window is waited out; tests move their clock instead
        self._window = window
        self._rules = _Rules(window, request_timeout + window, socket.gethostname())
        self._lock = anyio.Lock()  # this process's waiters, in arrival order
        self._in_flight = 0
        self._warned: set[str] = set()
        self._refused = False  # the file or its directory is not ours alone: never touched again
        self._fallback: RateLimiter | None = None

    @property
    def idle(self) -> bool:
        """Nothing of this process in flight: the window lives in the file, so forgetting it loses nothing."""
        return not self._in_flight and (self._fallback is None or self._fallback.idle)

    def usable(self) -> bool:
        """Whether the file can be shared, making it if missing (said once on stderr when not)."""
        return self._transact(lambda state, now: True) is not None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._lock:
            token = await self._acquire()
        if token is None:  # the file failed: this process keeps its own window from now on
            async with self._local().slot():
                yield
            return
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._transact(lambda state, now: _finish(state, now, token))

    def available(self, seconds: float) -> int:
        """Requests that could start within `seconds`, whoever sends them: the slots free now, plus those
        whose answers leave the window by then."""

        def count(state: _State, now: float) -> int:
            return count_available(
                self.per_minute, now, state.hold, state.done, len(state.flight), seconds, self._window
            )

        result = self._transact(count)
        return self._local().available(seconds) if result is None else result

    def held(self) -> float:
        """Seconds until a hold (set by any process) ends; 0 when none."""
        result = self._transact(lambda state, now: max(0.0, state.hold - now))
        return self._local().held() if result is None else result

    def hold_until(self, when: float | None = None) -> None:
        """No process starts a request before `when` (Unix time). None: Hardal said the window is full (a
        429 without Retry-After), so until the oldest answer in it leaves, a minute from now if none."""

        def hold(state: _State, now: float) -> bool:
            full = state.done[0] + self._window if state.done else now + self._window
            target = full if when is None else when
            state.hold = max(state.hold, min(target, now + MAX_HOLD))
            return True

        if self._transact(hold) is None:
            self._local().hold_until(when)

    # ------------------------------------------------------------------------------------------ internals

    async def _acquire(self) -> str | None:
        """A slot's token once one is free; None if the file cannot be used."""
        while True:
            taken = self._transact(self._take)
            if taken is None:
                return None
            token, wait = taken
            if token is not None:
                return token
            late = too_late(wait)
            if late is not None:
                raise late
            await self._sleep(wait)

    def _take(self, state: _State, now: float) -> tuple[str | None, float]:
        if state.hold > now:
            return None, state.hold - now
        if len(state.done) + len(state.flight) < self.per_minute:
            token = os.urandom(6).hex()
            state.flight.append([token, self._rules.host, os.getpid(), now])
            return token, 0.0
        # Every slot taken: wait for the oldest answer to leave the window; look again soon if requests in
        # flight hold slots (their process may die, or they may grow stale).
        wait = state.done[0] + self._window - now if state.done else POLL
        if state.flight:
            wait = min(wait, POLL)
        return None, max(wait, 0.01)

    def _transact(self, change: Callable[[_State, float], T]) -> T | None:
        """Lock the file, read it, drop what expired, apply `change`, write it back if it changed; the
        result of `change`, or None if the file cannot be used (then logged once)."""
        if self._refused:
            return None
        try:
            fd = _open_budget(self.path)
        except UnsafeFile as exc:
            self._refused = True
            self._warn(
                "unsafe",
                f"Rate budget {exc}, so it is not used: this process keeps its own budget. Remove it "
                "(hardal-mcp makes a safe one) to share the key's budget with other processes again.",
            )
            return None
        except OSError as exc:
            self._warn("open", f"Rate budget file {self.path} unusable ({exc}); keeping this process's own budget.")
            return None
        try:
            raw = _read_all(fd)
            state = _State.load(raw)
            if state is None:
                self._warn("garbled", f"Rate budget file {self.path} was unreadable; starting it afresh.")
                state = _State()
            now = self._clock()
            self._rules.prune(state, now)
            result = change(state, now)
            data = state.dump()
            if data != raw:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            return result
        except OSError as exc:
            self._warn("io", f"Rate budget file {self.path} failed ({exc}); keeping this process's own budget.")
            return None
        finally:
            os.close(fd)

    def _local(self) -> RateLimiter:
        if self._fallback is None:
            self._fallback = RateLimiter(self.per_minute, sleep=self._sleep)
        return self._fallback

    def _warn(self, kind: str, message: str) -> None:
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        log.log(level, message)


def _finish(state: _State, now: float, token: str) -> None:
    """The request `token` was answered now: its slot stays taken for a minute from now."""
    state.flight = [entry for entry in state.flight if entry[0] != token]
    bisect.insort(state.done, now)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, as another user
        return True
    return True


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------- files of our own only


def _open_ours(path: Path, flags: int, at: int, *, directory: bool = False) -> int:
    """`path.name` in the directory open as `at`, not through a symbolic link, provided it is a regular file
    with no other hard link (or a directory) of this user that neither group nor others may write; then
    made 0600 (0700) if it is not. UnsafeFile otherwise."""
    kind = "directory" if directory else "file"
    try:
        fd = os.open(path.name, flags | _OPEN, 0o600, dir_fd=at)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{kind} {path} is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        problem = _not_ours_alone(info, directory)
        if problem:
            raise UnsafeFile(f"{kind} {path} {problem}")
        mode = 0o700 if directory else 0o600
        if stat.S_IMODE(info.st_mode) != mode:  # tighter than the umask left it, or usable despite it
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _not_ours_alone(info: os.stat_result, directory: bool) -> str | None:
    """Why a file (directory) is not one to trust, or None."""
    if not (stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)):
        return "is not a directory" if directory else "is not a regular file"
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return "may be written by other users"
    if not directory and info.st_nlink > 1:  # 0 is fine: a file removed by a sweep is opened again
        return "has other hard links"
    return None


def _open_dir(directory: Path) -> int:
    """The budget directory, made 0700 if missing; UnsafeFile if it is not ours alone."""
    private_directory(directory.parent)
    # The store's own place may be reached through links: it is the user's to choose.
    above = os.open(directory.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory.name, 0o700, dir_fd=above)
        return _open_ours(directory, os.O_RDONLY, above, directory=True)
    finally:
        os.close(above)


def _open_budget(path: Path) -> int:
    """The budget file `path`, made if missing, locked, and still the file the path names: a sweep may
    have removed it between the open and the lock, and state written there would be lost to all."""
    at = _open_dir(path.parent)
    try:
        for _ in range(REOPENS):
            fd = _open_ours(path, os.O_RDWR | os.O_CREAT, at)
            try:
                _lock(fd)
                if _still_named(fd, path, at):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise OSError(f"removed {REOPENS} times while this process waited for it")
    finally:
        os.close(at)


def _still_named(fd: int, path: Path, at: int) -> bool:
    """Whether `path.name` in the directory `at` still names the file open as `fd`."""
    try:
        named = os.stat(path.name, dir_fd=at, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


# ------------------------------------------------------------------------------------- no piling up

_swept: dict[Path, float] = {}  # budget directory: when this process last swept it


def sweep(
    directory: Path,
    *,
    request_timeout: float,
    clock: Callable[[], float] = time.time,
    window: float = WINDOW,
    max_files: int = MAX_FILES,
) -> None:
    """Remove the budget files in `directory` that count for nothing (no hold pending, no answer within the
    window, nothing in flight); then, while more than `max_files` remain, those with nothing pending, least
    recently answered first. Each is removed under its lock; one another process holds locked is in use,
    and stays. OSError or UnsafeFile if the directory cannot be used."""
    rules = _Rules(window, request_timeout + window, socket.gethostname())
    at = _open_dir(directory)
    try:
        kept, quiet = 0, []
        for name in os.listdir(at):
            if not _FINGERPRINT.fullmatch(name):
                continue
            state = _remove_if(directory / name, at, rules, clock(), rules.idle)
            if state is None or not rules.idle(state):
                kept += 1
                if state is not None and rules.quiet(state):
                    quiet.append((state.done[-1], name))  # not idle, so answered within the window
        for _, name in sorted(quiet)[: max(0, kept - max_files)]:
            _remove_if(directory / name, at, rules, clock(), rules.quiet)
    finally:
        os.close(at)


def _remove_if(path: Path, at: int, rules: _Rules, now: float, remove: Callable[[_State], bool]) -> _State | None:
    """The state of the budget file `path` (garbage counts as empty), removed if `remove(state)`; None if
    it is gone, in use (locked) or not ours alone."""
    try:
        fd = _open_ours(path, os.O_RDWR, at)
    except (OSError, UnsafeFile):
        return None
    try:
        if not _lock(fd, wait=False) or not _still_named(fd, path, at):
            return None
        state = _State.load(_read_all(fd)) or _State()
        rules.prune(state, now)
        if remove(state):
            os.unlink(path.name, dir_fd=at)
        return state
    except OSError:
        return None
    finally:
        os.close(fd)


def _sweep_if_due(directory: Path, request_timeout: float, clock: Callable[[], float]) -> None:
    """Sweep `directory` unless this process did in the last SWEEP_EVERY seconds. A directory that cannot
    be used is said so by the limiter that is about to use it."""
    now = clock()
    last = _swept.get(directory)
    if last is not None and abs(now - last) < SWEEP_EVERY:
        return
    _swept[directory] = now
    with contextlib.suppress(OSError, UnsafeFile):
        sweep(directory, request_timeout=request_timeout, clock=clock)


def budget_path(settings: Settings, fingerprint: str) -> Path | None:
    """`<store dir>/budget/<fingerprint>`; None when HARDAL_STORE is off."""
    if settings.store == "off" or not _FINGERPRINT.fullmatch(fingerprint):
        return None
    from .store import store_path

    path = store_path(settings.store)
    return None if path is None else path.parent / DIRECTORY / fingerprint


def shared_limiter(
    settings: Settings, fingerprint: str, *, clock: Callable[[], float] = time.time
) -> SharedRateLimiter | None:
    """The limiter shared by this machine's processes for the key `fingerprint`; None when HARDAL_STORE is
    off, without `fcntl`, or when the file cannot be made or is not ours alone (said once on stderr). Files
    that count for nothing are swept first (at most once a minute)."""
    path = budget_path(settings, fingerprint) if HAVE_FLOCK else None
    if path is None:
        return None
    _sweep_if_due(path.parent, settings.timeout, clock)
    limiter = SharedRateLimiter(path, settings.rate_limit, request_timeout=settings.timeout, clock=clock)
    return limiter if limiter.usable() else None
