"""What the client needs of a key's rate budget, whatever keeps it: the `Limiter` protocol, the window
arithmetic every backend shares, and `RateLimiter`, the budget a process keeps alone.

The backends (`budget.SharedRateLimiter`, a file shared by a machine's processes; `budget_redis`, Redis
shared by replicas) and the client depend on this module; it depends on none of them, so neither does the
client on a backend (`budget_backends` chooses one)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Protocol

import anyio

from .errors import RateLimitError

WINDOW = 60.0  # seconds: Hardal's sliding window
MAX_HOLD = 900.0  # a hold (Retry-After) longer than this is cut to it

# The latest Unix time at which a request of the current task may still start. A caller with a deadline
# sets it (tasks it starts inherit it): a slot that frees up later is refused at once, not waited for,
# since another caller or process took the one that was planned on.
START_BY: ContextVar[float | None] = ContextVar("hardal_start_by", default=None)


class Limiter(Protocol):
    """What the client and the planner need of a key's rate limiter, whichever backend keeps it."""

    per_minute: int

    @property
    def idle(self) -> bool: ...

    def slot(self) -> AbstractAsyncContextManager[None]: ...

    def available(self, seconds: float) -> int: ...

    def held(self) -> float: ...

    def hold_until(self, when: float | None = None) -> None: ...


class BudgetBackend(Protocol):
    """Makes each key's limiter (by key fingerprint); does its background work while a server runs (`run`,
    which returns at once when there is none); lets go of what it holds when the client closes."""

    def __call__(self, fingerprint: str) -> Limiter: ...

    async def run(self) -> None: ...

    async def aclose(self) -> None: ...


def too_late(wait: float) -> RateLimitError | None:
    """The error for a request that would have to wait `wait` seconds for a slot, if that is too late."""
    start_by = START_BY.get()
    if start_by is None or time.time() + wait <= start_by:
        return None
    return RateLimitError(
        f"the key's rate budget is spent by other requests for the next {max(1, math.ceil(wait))} s; try again then",
        retry_after=wait,
    )


def count_available(
    per_minute: int,
    now: float,
    hold: float,
    answered: Iterable[float],
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


class RateLimiter:
    """At most `per_minute` requests in any sliding 60-second window as Hardal counts them, in this process.

    A request holds its slot while in flight and is then dated by the moment its answer came, which is
    never earlier than the moment it reached Hardal: so network delay can never make two requests look
    closer together to Hardal than to us (safe under fixed windows too)."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep  # how a full window is waited out; tests move their clock instead
        self._done: deque[float] = deque()  # answer times within the last minute, oldest first
        self._in_flight = 0
        self._hold = -math.inf  # `clock` time until which a 429 said the budget is spent
        self._lock = anyio.Lock()

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing answered within the last minute: forgetting it changes nothing."""
        return not self._in_flight and (not self._done or self._clock() - self._done[-1] >= 60.0)

    def available(self, seconds: float) -> int:
        """Requests that could start within `seconds` from now: free slots, plus slots whose answers leave
        the window by then (requests in flight are counted as answered now); none before a hold ends."""
        now = self._clock()
        return count_available(self.per_minute, now, self._hold, list(self._done), self._in_flight, seconds)

    def held(self) -> float:
        """Seconds until a hold set by `hold_until` ends (0: none)."""
        return max(0.0, self._hold - self._clock())

    def hold_until(self, when: float | None = None) -> None:
        """Count the budget as spent until `when` (Unix time), as after a 429; None (no Retry-After): until
        the oldest answer of the window leaves it, a minute from now if there is none.

        Only `available` heeds it: in one process the request that met the 429 already waits before its
        retry, and the planner asks `available` before sending more. (The shared backends also hold back
        `slot`, for the other processes.)"""
        now = self._clock()
        full = self._done[0] + 60.0 if self._done else now + 60.0
        target = full if when is None else now + (when - time.time())
        self._hold = max(self._hold, min(target, now + MAX_HOLD))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = self._clock()
                while self._done and now - self._done[0] >= 60.0:
                    self._done.popleft()
                if len(self._done) + self._in_flight < self.per_minute:
                    self._in_flight += 1
                    break
                # Every slot taken: wait for the oldest answer to leave the window, or for one in flight.
                wait = 60.0 - (now - self._done[0]) if self._done else 0.05
                late = too_late(wait)
                if late is not None:
                    raise late
                await self._sleep(wait)
        try:
            yield
        finally:
            self._in_flight -= 1
            self._done.append(self._clock())
