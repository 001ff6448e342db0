"""One rate budget per API key, shared by every hardal-mcp process on the machine.

Hardal allows about 100 requests per minute per key, whoever sends them. Two servers with the same key
(a desktop host and a CLI call, two editor windows) each keeping to HARDAL_RATE_LIMIT on their own would
together send twice that. `SharedRateLimiter` keeps one sliding 60-second window per key fingerprint in a
small file next to the day store (`<store dir>/budget-<fingerprint>`, mode 0600), read and rewritten under
an exclusive `fcntl.flock` for the few microseconds each decision takes. It keeps `client.RateLimiter`'s
rules:

* a request holds its slot while in flight, and is then dated by the moment its answer came (never
  earlier than the moment Hardal counted it);
* times are wall-clock (`time.time`): monotonic clocks are not comparable between processes;
* a process that dies mid-request cannot hold a slot for ever: its in-flight entry counts as answered at
  the moment its death is noticed (same host, pid gone), and any in-flight entry older than the request
  timeout + 60 s is dropped (by then Hardal's window has forgotten it, whatever became of it);
* after a 429, `hold_until` makes every process sharing the file wait (for Retry-After, or when there is
  none, until the oldest request of the window leaves it: the window is taken to be full).

Where `fcntl` does not exist (Windows), or the directory cannot be written, each process keeps its own
`client.RateLimiter`. The file names the key only by its fingerprint."""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import orjson

from .config import Settings
from .errors import RateLimitError

if TYPE_CHECKING:
    from .client import RateLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")

WINDOW = 60.0  # seconds: Hardal's sliding window
POLL = 0.25  # seconds between looks at the file while only requests in flight hold the slots

# The latest Unix time at which a request of the current task may still start. A caller with a deadline
# sets it (tasks it starts inherit it): a slot that frees up later is refused at once, not waited for,
# since another caller or process took the one that was planned on.
START_BY: ContextVar[float | None] = ContextVar("hardal_start_by", default=None)


def too_late(wait: float) -> RateLimitError | None:
    """The error for a request that would have to wait `wait` seconds for a slot, if that is too late."""
    start_by = START_BY.get()
    if start_by is None or time.time() + wait <= start_by:
        return None
    return RateLimitError(
        f"the key's rate budget is spent by other requests for the next {wait:.0f} s; try again then",
        retry_after=wait,
    )


MAX_HOLD = 900.0  # a hold (Retry-After) longer than this is cut to it
_FINGERPRINT = re.compile(r"[0-9a-f]{1,64}")

if sys.platform != "win32":
    import fcntl

    HAVE_FLOCK = True

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor is closed

else:  # pragma: no cover - exercised on Windows only
    HAVE_FLOCK = False


class Limiter(Protocol):
    """What the client and the planner need of a rate limiter (`client.RateLimiter`, `SharedRateLimiter`)."""

    per_minute: int

    @property
    def idle(self) -> bool: ...

    def slot(self) -> AbstractAsyncContextManager[None]: ...

    def available(self, seconds: float) -> int: ...

    def held(self) -> float: ...

    def hold_until(self, when: float | None = None) -> None: ...


def count_available(
    per_minute: int,
    now: float,
    hold: float,
    answered: list[float],
    in_flight: int,
    seconds: float,
    window: float = WINDOW,
) -> int:
    """Requests that could start within `seconds` of `now`: the slots free then. An answer frees its slot
    `window` seconds after it came; a request in flight is counted as answered now; nothing starts before
    `hold`."""
    horizon = now + max(0.0, seconds)
    if hold > horizon:
        return 0
    still = sum(1 for t in answered if now - t < window and t + window > horizon)
    flying = in_flight if horizon < now + window else 0
    return max(0, per_minute - still - flying)


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
                    and type(e[3]) in (int, float)
                    for e in flight
                )
            ):
                return None
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return None
        return cls(float(hold), sorted(map(float, done)), flight)


class SharedRateLimiter:
    """At most `per_minute` requests of one key in any sliding 60 s window, counted over every process that
    shares `path` (see the module docstring). Same interface as `client.RateLimiter`."""

    def __init__(
        self,
        path: Path,
        per_minute: int,
        *,
        request_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        window: float = WINDOW,  # seconds; Hardal's is a minute (tests shorten it)
    ) -> None:
        self.path = path
        self.per_minute = per_minute
        self._clock = clock
        self._window = window
        self._stale_after = request_timeout + window
        self._lock = anyio.Lock()  # this process's waiters, in arrival order
        self._in_flight = 0
        self._host = socket.gethostname()
        self._warned: set[str] = set()
        self._fallback: RateLimiter | None = None

    @property
    def idle(self) -> bool:
        """Nothing of this process in flight: the window lives in the file, so forgetting it loses nothing."""
        return not self._in_flight and (self._fallback is None or self._fallback.idle)

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

        def hold(state: _State, now: float) -> None:
            full = state.done[0] + self._window if state.done else now + self._window
            target = full if when is None else when
            state.hold = max(state.hold, min(target, now + MAX_HOLD))

        if self._transact(hold) is None and self._fallback is not None:
            self._fallback.hold_until(when)

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
            await anyio.sleep(wait)

    def _take(self, state: _State, now: float) -> tuple[str | None, float]:
        if state.hold > now:
            return None, state.hold - now
        if len(state.done) + len(state.flight) < self.per_minute:
            token = os.urandom(6).hex()
            state.flight.append([token, self._host, os.getpid(), now])
            return token, 0.0
        # Every slot taken: wait for the oldest answer to leave the window; look again soon if requests in
        # flight hold slots (their process may die, or they may grow stale).
        wait = state.done[0] + self._window - now if state.done else POLL
        if state.flight:
            wait = min(wait, POLL)
        return None, max(wait, 0.01)

    def _prune(self, state: _State, now: float) -> None:
        if state.hold <= now:
            state.hold = 0.0
        # A clock set back must not make entries live longer: none is dated after now.
        state.done = [min(t, now) for t in state.done if now - t < self._window]
        kept = []
        for token, host, pid, started in state.flight:
            started = min(started, now)
            if now - started >= self._stale_after:
                continue  # whatever became of it, Hardal's window has forgotten it
            if host == self._host and pid != os.getpid() and not _alive(pid):
                bisect.insort(state.done, now)  # its process died mid-request: count it as answered now
                continue
            kept.append([token, host, pid, started])
        state.flight = kept

    def _transact(self, change: Callable[[_State, float], T]) -> T | None:
        """Lock the file, read it, drop what expired, apply `change`, write it back if it changed; the
        result of `change`, or None if the file cannot be used (then logged once)."""
        try:
            fd = self._open()
        except OSError as exc:
            self._warn("open", f"Rate budget file {self.path} unusable ({exc}); keeping this process's own budget.")
            return None
        try:
            _lock(fd)
            raw = _read_all(fd)
            state = _State.load(raw)
            if state is None:
                self._warn("garbled", f"Rate budget file {self.path} was unreadable; starting it afresh.")
                state = _State()
            now = self._clock()
            self._prune(state, now)
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

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the directory went away (a cleaned cache): make it again
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def _local(self) -> RateLimiter:
        if self._fallback is None:
            from .client import RateLimiter

            self._fallback = RateLimiter(self.per_minute)
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


def budget_path(settings: Settings, fingerprint: str) -> Path | None:
    """`<store dir>/budget-<fingerprint>`; None when HARDAL_STORE is off."""
    if settings.store == "off" or not _FINGERPRINT.fullmatch(fingerprint):
        return None
    from .store import store_path

    path = store_path(settings.store)
    return None if path is None else path.parent / f"budget-{fingerprint}"


def shared_limiter(settings: Settings, fingerprint: str) -> SharedRateLimiter | None:
    """The limiter shared by this machine's processes for the key `fingerprint`; None when HARDAL_STORE is
    off, without `fcntl`, or when the file cannot be made (said once on stderr)."""
    path = budget_path(settings, fingerprint) if HAVE_FLOCK else None
    if path is None:
        return None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        with contextlib.suppress(OSError):
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
    except OSError as exc:
        log.warning("Rate budget file %s unusable (%s); this process keeps its own budget.", path, exc)
        return None
    return SharedRateLimiter(path, settings.rate_limit, request_timeout=settings.timeout)
