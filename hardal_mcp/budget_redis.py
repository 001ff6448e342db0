"""One rate budget per API key shared by every replica, on every machine, through Redis (HARDAL_REDIS_URL).

The same rules as the machine's budget file (`budget`), kept by Lua scripts that Redis runs atomically:

* a request holds its slot while in flight and is then dated by its answer; at most `per_minute` answers
  and requests in flight in any sliding 60-second window;
* after a 429, a hold (Retry-After, or without one, until the window's oldest answer leaves it) stops
  every replica;
* a request in flight counts as answered now once its replica stops announcing itself (a replica that
  died mid-request), and is dropped once older than the request timeout + 60 s.

Keys are `hardal:budget:<key fingerprint>:hold|done|flight`, and `hardal:replicas` (the replicas seen in the
last REPLICA_TTL seconds); each expires once it counts for nothing. Times are the replicas' wall clocks
(keep them NTP-synced: a skew well below the round trip to Hardal is absorbed by dating requests by their
answers). Redis Cluster is not supported: a script's keys span hash slots.

When Redis is lost mid-run, each limiter goes on alone with what it last saw of the window (every
replica's answers, the hold, the requests in flight, counted as answered then) at a conservative share,
HARDAL_RATE_LIMIT ÷ the replicas last seen: the replicas together stay within the limit. What other
replicas sent after that last view is unknown and may have filled the window, so the window is counted
full from the moment the loss is seen (and so is it by a limiter that finds Redis's data renewed): each
replica's share starts once that window has passed. A Redis blip therefore pauses new requests for up to a
minute (stored and cached days still answer), and never sends a share into a window Hardal sees full. It is said once
on stderr, and Redis is asked again after 1 s, then at growing intervals up to RETRY_MAX. When it answers,
each limiter first writes back the answers it kept alone (idempotently, by token), so the window in Redis
is whole again, whether Redis restarted empty or was only out of reach.

The URL (it may hold a password) is never shown: messages name HARDAL_REDIS_URL and the error's type."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.retry import Retry

from .config import Settings
from .errors import ConfigError
from .ratelimit import MAX_HOLD, WINDOW, count_available, too_late

log = logging.getLogger(__name__)
T = TypeVar("T")
Arg = str | int | float  # what a script is given

PREFIX = "hardal:"
REPLICAS = PREFIX + "replicas"
SECRET = PREFIX + "secret"
EPOCH = PREFIX + "epoch"
EPOCH_TTL = 86400.0  # seconds the epoch outlives the last call: then the next caller writes back what it knows
SECRET_TTL = 30 * 86400.0  # seconds the key-fingerprint secret outlives the last replica that used it
REPLICA_TTL = 30.0  # seconds a replica counts as alive after it last announced itself
BEAT = 10.0  # seconds between a serving replica's announcements
POLL = 0.25  # seconds between looks while only requests in flight hold the slots
TIMEOUT = 1.0  # seconds a Redis command may take: a Redis that hangs counts as lost after this
# Seconds after a loss before Redis is asked again, doubled at each failure up to RETRY_MAX: short, since
# what replicas spent alone reaches the others only once each writes it back.
RETRY_MIN = 0.25
RETRY_MAX = 2.0
LOCAL = "~"  # tokens of entries only this replica knows of (others' requests in flight when Redis was lost)

# Shared by every script. KEYS: hold, done, flight, replicas, epoch. ARGV: now, window, stale_after (in
# flight), replica ttl, this replica, the epoch the caller last saw ('' for none), a new epoch's id; then
# the script's own from ARGV[8]. The epoch names one life of Redis's data: a caller that saw another (Redis
# restarted empty, or was flushed) is told so before anything is granted, and writes back what it knows.
_PRELUDE = """
local now, window, stale, ttl, me = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local function ms(seconds) return math.max(1, math.ceil(seconds * 1000)) end
redis.call('SET', KEYS[5], ARGV[7], 'NX')
redis.call('PEXPIRE', KEYS[5], ms(EPOCH_TTL))
local epoch = redis.call('GET', KEYS[5])
if ARGV[6] ~= '' and ARGV[6] ~= epoch then return {'epoch', epoch} end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - ttl))
redis.call('ZADD', KEYS[4], now, me)
redis.call('PEXPIRE', KEYS[4], ms(ttl))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - stale)
for _, token in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local replica = string.match(token, '^([^|]*)|') or ''
  if not redis.call('ZSCORE', KEYS[4], replica) then
    -- its replica stopped announcing itself (died mid-request): answered now, as far as anyone knows
    redis.call('ZREM', KEYS[3], token)
    redis.call('ZADD', KEYS[2], now, token)
    redis.call('PEXPIRE', KEYS[2], ms(window))
  end
end
local hold = tonumber(redis.call('GET', KEYS[1]) or '0')
if hold <= now then hold = 0 end
local function snapshot(granted, wait)
  local reply = {granted, tostring(wait), redis.call('ZCARD', KEYS[4]), tostring(hold)}
  reply[5], reply[6] = redis.call('ZCARD', KEYS[3]), epoch
  for _, item in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')) do reply[#reply + 1] = item end
  return reply
end
local function oldest()
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return nil
end
"""

# ARGV[8]: per_minute, ARGV[9]: token, ARGV[10]: poll, ARGV[11]: at most this many of this replica's own in
# the window (0: no such cap). A slot (token put in flight), or how long to wait.
_ACQUIRE = """
local per_minute, token, poll, mine = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
if hold > now then return snapshot(0, hold - now) end
if mine > 0 then
  -- just back from a loss: this replica keeps to its share until every replica has written back
  local prefix, count = me .. '|', 0
  for k = 2, 3 do
    for _, t in ipairs(redis.call('ZRANGE', KEYS[k], 0, -1)) do
      if string.sub(t, 1, #prefix) == prefix then count = count + 1 end
    end
  end
  if count >= mine then return snapshot(0, poll) end
end
if redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3]) < per_minute then
  redis.call('ZADD', KEYS[3], now, token)
  redis.call('PEXPIRE', KEYS[3], ms(stale))
  return snapshot(1, 0)
end
local first = oldest()
local wait = poll
if first then wait = first + window - now end
if redis.call('ZCARD', KEYS[3]) > 0 then wait = math.min(wait, poll) end
return snapshot(0, math.max(wait, 0.01))
"""

# ARGV[8]: token. The request was answered now: its slot stays taken for a window from now.
_RELEASE = """
redis.call('ZREM', KEYS[3], ARGV[8])
redis.call('ZADD', KEYS[2], now, ARGV[8])
redis.call('PEXPIRE', KEYS[2], ms(window))
return snapshot(1, 0)
"""

# ARGV[8]: seconds from now the hold lasts, or '' (a 429 without Retry-After: until the window frees);
# ARGV[9]: the longest hold.
_HOLD = """
local target
if ARGV[8] == '' then
  target = oldest()
  if target then target = target + window else target = now + window end
else
  target = now + tonumber(ARGV[8])
end
target = math.min(target, now + tonumber(ARGV[9]))
if target > now and target > hold then
  hold = target
  redis.call('SET', KEYS[1], tostring(hold), 'PX', ms(hold - now))
end
return snapshot(1, 0)
"""

_STATE = "return snapshot(1, 0)"

# ARGV[8]: a hold (absolute time, 0: none), ARGV[9]: the longest hold, then token, time pairs: what a
# replica knows of the window (its answers kept alone while Redis was out of reach, and every replica's it
# saw before). Idempotent: an answer is one member however often it is written back.
_MERGE = """
local kept = tonumber(ARGV[8])
if kept > now and kept > hold then
  hold = math.min(kept, now + tonumber(ARGV[9]))
  redis.call('SET', KEYS[1], tostring(hold), 'PX', ms(hold - now))
end
for i = 10, #ARGV, 2 do
  local t = tonumber(ARGV[i + 1])
  if now - t < window then redis.call('ZADD', KEYS[2], 'GT', math.min(t, now), ARGV[i]) end
end
redis.call('PEXPIRE', KEYS[2], ms(window))
return snapshot(1, 0)
"""

# KEYS: replicas, secret. ARGV: now, replica ttl, this replica, the key secret this replica names keys with
# ('' before it knows it), the secret's expiry (ms). Puts the secret back if Redis lost it (a restart).
_ANNOUNCE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[2])))
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[5]) end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {redis.call('ZCARD', KEYS[1]), redis.call('GET', KEYS[2])}
"""

SCRIPTS = {
    name: _PRELUDE.replace("EPOCH_TTL", repr(EPOCH_TTL)) + body
    for name, body in {
        "acquire": _ACQUIRE,
        "release": _RELEASE,
        "hold": _HOLD,
        "state": _STATE,
        "merge": _MERGE,
    }.items()
}


class _Lost(Exception):
    """Redis did not answer (said once on stderr by the backend)."""


def _options() -> dict[str, Any]:
    # One retry: a pooled connection that Redis closed (a restart) is replaced at once; a Redis that is down
    # fails fast, and the budget goes local instead of stalling the event loop.
    return {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT, "decode_responses": True}


def connect_sync(settings: Settings, *, binary: bool = False) -> redis.Redis:
    """`binary`: replies as bytes (the day store's bodies), not text."""
    assert settings.redis_url is not None
    options = _options() | {"decode_responses": not binary}
    return redis.Redis.from_url(settings.redis_url.get_secret_value(), retry=Retry(NoBackoff(), 1), **options)


def connect_async(settings: Settings) -> redis.asyncio.Redis:
    assert settings.redis_url is not None
    return redis.asyncio.Redis.from_url(
        settings.redis_url.get_secret_value(), retry=redis.asyncio.retry.Retry(NoBackoff(), 1), **_options()
    )


def unreachable(exc: BaseException) -> ConfigError:
    """The start-up refusal for a Redis that does not answer: HARDAL_REDIS_URL named, never its value."""
    if isinstance(exc, AuthenticationError):
        why = "Redis refused the credentials in HARDAL_REDIS_URL"
    else:
        why = f"Redis at HARDAL_REDIS_URL did not answer ({type(exc).__name__})"
    return ConfigError(
        f"{why}. An operator who sets HARDAL_REDIS_URL wants the replicas' budget shared, so hardal-mcp does not "
        "start without it: check the URL, its password and that Redis is up, or unset HARDAL_REDIS_URL."
    )


def check(settings: Settings) -> None:
    """Refuse to start (ConfigError) unless Redis answers at HARDAL_REDIS_URL."""
    client = connect_sync(settings)
    try:
        client.ping()
    except (RedisError, OSError, ValueError) as exc:
        raise unreachable(exc) from None
    finally:
        client.close()


def shared_secret(settings: Settings) -> bytes:
    """The key-fingerprint secret every replica shares: made by the first replica (SET NX), read by the
    others, its expiry renewed by every start and announcement. ConfigError when Redis does not answer."""
    client = connect_sync(settings)
    try:
        client.set(SECRET, secrets.token_hex(32), nx=True, px=int(SECRET_TTL * 1000))
        value = client.get(SECRET)
        client.pexpire(SECRET, int(SECRET_TTL * 1000))
    except (RedisError, OSError, ValueError) as exc:
        raise unreachable(exc) from None
    finally:
        client.close()
    if not isinstance(value, str):  # vanished between the two commands (a flush): ask again at the next start
        raise ConfigError("Redis at HARDAL_REDIS_URL lost the shared key secret while it was read; start again.")
    return bytes.fromhex(value)


class RedisBudgets:
    """Each key's budget in Redis (a `ratelimit.BudgetBackend`), and this replica's link to it: whether Redis
    answers, when to ask it again, and how many replicas it last saw."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        window: float = WINDOW,
    ) -> None:
        self.settings = settings
        self.replica = secrets.token_hex(8)
        self.replicas = 1  # seen within REPLICA_TTL at the last answer: the share while Redis is lost
        self._clock = clock  # tests move their own
        self._sleep = sleep
        self._window = window
        self._secret = ""  # the key secret as first announced: kept alive, and put back if Redis lost it
        self._sync = connect_sync(settings)
        self._async = connect_async(settings)
        self._sync_scripts = {name: self._sync.register_script(lua) for name, lua in SCRIPTS.items()}
        self._async_scripts = {name: self._async.register_script(lua) for name, lua in SCRIPTS.items()}
        self._announce = self._async.register_script(_ANNOUNCE)
        self._limiters: weakref.WeakSet[RedisRateLimiter] = weakref.WeakSet()
        self._lost_at: float | None = None  # when Redis was lost (`clock`); None while it answers
        # Just after a loss, this replica keeps to its share even through Redis (`careful`).
        self._careful_until = self._careful_since = 0.0
        self._present = self._expected = 1  # replicas Redis shows now; those it showed before the loss
        self._retry_at = 0.0
        self._backoff = RETRY_MIN
        self._outages = 0
        self._warned: set[str] = set()

    def __call__(self, fingerprint: str) -> RedisRateLimiter:
        limiter = RedisRateLimiter(
            self,
            fingerprint,
            self.settings.rate_limit,
            request_timeout=self.settings.timeout,
            clock=self._clock,
            window=self._window,
            sleep=self._sleep,
        )
        self._limiters.add(limiter)
        return limiter

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._async.aclose()
        with contextlib.suppress(RedisError, OSError):
            self._sync.close()

    async def run(self) -> None:
        """While the replica serves: announce it every BEAT seconds (its requests in flight stay counted as in
        flight, it counts in every replica's share, the key secret stays alive); while Redis is lost, ask it
        again when due, and once it answers, write back what each key's limiter kept alone."""
        while True:
            with contextlib.suppress(_Lost):
                if self.reachable:
                    await self._guarded(self._announce_once())
                    for limiter in list(self._limiters):
                        await limiter.write_back()
            await anyio.sleep(BEAT if self._lost_at is None else max(0.05, self._retry_at - self._clock()))

    async def _announce_once(self) -> None:
        args: list[Arg] = [self._clock(), REPLICA_TTL, self.replica, self._secret, int(SECRET_TTL * 1000)]
        count, secret = self._answered(await self._announce(keys=[REPLICAS, SECRET], args=args))
        self._seen(int(count))
        if not self._secret and isinstance(secret, str):
            self._secret = secret
        elif isinstance(secret, str) and secret != self._secret:
            self._warn_once(
                "secret",
                "The key secret in Redis is not the one this replica started with (Redis lost it and another "
                "replica started meanwhile): restart this replica so that all name keys, and share budgets, alike.",
            )

    # -------------------------------------------------------------------------------- the link to Redis

    @property
    def reachable(self) -> bool:
        """Whether to ask Redis now: it answered last, or it is time to ask it again."""
        return self._lost_at is None or self._clock() >= self._retry_at

    def wait_for_retry(self, wait: float) -> float:
        """`wait`, cut so that a limiter waiting alone asks Redis again when it is due."""
        if self._lost_at is None:
            return wait
        return max(0.01, min(wait, self._retry_at - self._clock()))

    def call(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> list[Any]:
        """Run script `name` and return its reply; _Lost if Redis did not answer. Never the one to ask a
        lost Redis again: this blocks the event loop while it waits (the async calls do that)."""
        if self._lost_at is not None:
            raise _Lost
        try:
            reply = self._sync_scripts[name](keys=list(keys), args=list(args))
        except (RedisError, OSError) as exc:
            raise self._lost(exc) from None
        return self._answered(reply)

    async def acall(self, name: str, keys: Sequence[str], args: Callable[[], Sequence[Arg]]) -> list[Any]:
        """`call`, without blocking the event loop while Redis answers. A lost Redis is asked first whether
        it is back (PING), so that a script runs knowing it (`args` are made then: `cap` may have changed)."""
        if not self.reachable:
            raise _Lost
        if self._lost_at is not None:
            await self._guarded(self._async.ping())
            self._back()
        script = self._async_scripts[name]
        return self._answered(await self._guarded(script(keys=list(keys), args=list(args()))))

    async def _guarded(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except (RedisError, OSError) as exc:
            raise self._lost(exc) from None

    def _back(self) -> None:
        if self._lost_at is not None:
            log.warning(
                "Redis at HARDAL_REDIS_URL answers again after %.0f s: the rate budget is shared again.",
                self._clock() - self._lost_at,
            )
            self._lost_at = None
            self.careful()
            self._backoff = RETRY_MIN

    def _answered(self, reply: Any) -> list[Any]:
        self._back()
        if reply[0] != "epoch" and len(reply) > 2:
            self._seen(int(reply[2]))
        return list(reply)

    def _lost(self, exc: BaseException) -> _Lost:
        now = self._clock()
        if self._lost_at is None:
            self._lost_at = now
            self._outages += 1
            log.log(
                logging.WARNING if self._outages == 1 else logging.INFO,
                "Redis at HARDAL_REDIS_URL does not answer (%s): each key's budget goes on in this replica alone, "
                "at 1/%d of HARDAL_RATE_LIMIT (the replicas last seen), until Redis answers again.",
                type(exc).__name__,
                self.replicas,
            )
        else:
            self._backoff = min(self._backoff * 2, RETRY_MAX)
        self._retry_at = now + self._backoff
        return _Lost()

    def _warn_once(self, kind: str, message: str) -> None:
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        log.log(level, message)

    def _seen(self, replicas: int) -> None:
        self._present = max(1, replicas)
        # While careful, replicas that have not announced themselves again since the loss still count.
        self.replicas = max(self._present, self._expected) if self._careful() else self._present

    def careful(self) -> None:
        """Keep to this replica's share: Redis's data was lost or out of reach, and what other replicas spent
        alone may not be written back yet. For a window at least, and until as many replicas as before have
        announced themselves again (or REPLICA_TTL has passed: those missing have died)."""
        now = self._clock()
        self._expected = max(self._expected if self._careful() else 1, self.replicas)
        self._careful_since = now
        self._careful_until = now + self._window

    def _careful(self) -> bool:
        now = self._clock()
        if now < self._careful_until:
            return True
        return self._present < self._expected and now < self._careful_since + REPLICA_TTL

    def cap(self, per_minute: int) -> int:
        """The most of this replica's own requests a window may hold through Redis now (0: no cap)."""
        return self.share(per_minute) if self._careful() else 0

    def share(self, per_minute: int) -> int:
        """What one replica may send alone: its part of the limit among the replicas last seen."""
        return max(1, per_minute // self.replicas)


class RedisRateLimiter:
    """At most `per_minute` requests of one key in any sliding 60 s window, counted over every replica that
    shares the Redis behind `backend` (see the module docstring). Same interface as `ratelimit.RateLimiter`."""

    def __init__(
        self,
        backend: RedisBudgets,
        fingerprint: str,
        per_minute: int,
        *,
        request_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        window: float = WINDOW,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.per_minute = per_minute
        self.fingerprint = fingerprint
        self._backend = backend
        self._clock = clock
        self._window = window
        self._sleep = sleep
        self._stale_after = request_timeout + window
        base = f"{PREFIX}budget:{fingerprint}:"
        self._keys = [base + "hold", base + "done", base + "flight", REPLICAS, EPOCH]
        self._lock = anyio.Lock()  # this replica's waiters, in arrival order
        # What this replica knows of the window: every answer Redis showed at its last reply and its own
        # since (token → time); the hold; its own requests in flight; others' in flight at the last reply.
        self._known: dict[str, float] = {}
        self._hold = 0.0
        self._flying: set[str] = set()
        self._others_flying = 0
        self._epoch = ""  # the life of Redis's data this limiter last saw
        self._alone = False  # answers or a hold kept while Redis was lost, not yet written back
        self._synced = False  # a reply from Redis came since the last loss: what it showed is the last view

    @property
    def idle(self) -> bool:
        """Nothing in flight, nothing kept alone: the window lives in Redis, so forgetting it loses nothing."""
        return not self._flying and not (self._alone and self._known)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._lock:
            token = await self._acquire()
        self._flying.add(token)
        try:
            yield
        finally:
            self._flying.discard(token)
            self._known[token] = self._clock()
            with anyio.CancelScope(shield=True):  # a cancelled call's request was still sent: it counts
                try:
                    await self._acall("release", token)
                except _Lost:
                    self._alone = True

    def available(self, seconds: float) -> int:
        """Requests that could start within `seconds`, whichever replica sends them."""
        now = self._clock()
        try:
            self._call("state")
        except _Lost:
            self._go_alone(now)
            share = self._backend.share(self.per_minute)
            flying = len(self._flying)
            return count_available(share, now, self._hold, self._known.values(), flying, seconds, self._window)
        flying = len(self._flying) + self._others_flying
        free = count_available(self.per_minute, now, self._hold, self._known.values(), flying, seconds, self._window)
        cap = self._backend.cap(self.per_minute)
        if cap:  # just back from a loss: this replica keeps to its share (as `slot` does)
            mine = [t for token, t in self._known.items() if token.startswith(self._backend.replica + "|")]
            free = min(free, count_available(cap, now, 0.0, mine, len(self._flying), seconds, self._window))
        return free

    def held(self) -> float:
        """Seconds until a hold (set by any replica) ends; 0 when none."""
        now = self._clock()
        try:
            self._call("state")
        except _Lost:
            self._go_alone(now)
        return max(0.0, self._hold - now)

    def hold_until(self, when: float | None = None) -> None:
        """No replica starts a request before `when` (Unix time). None: Hardal said the window is full (a
        429 without Retry-After), so until the oldest answer in it leaves, a window from now if none."""
        now = self._clock()
        delay = None if when is None else when - time.time()
        try:
            self._call("hold", "" if delay is None else delay, MAX_HOLD)
        except _Lost:
            self._go_alone(now)
            full = min(self._known.values()) + self._window if self._known else now + self._window
            target = full if delay is None else now + delay
            self._hold = max(self._hold, min(target, now + MAX_HOLD))
            self._alone = True

    async def write_back(self) -> None:
        """What this limiter kept alone while Redis was lost, into Redis (_Lost if it is lost again)."""
        if self._alone:
            await self._acall("state")

    # ------------------------------------------------------------------------------------------ internals

    async def _acquire(self) -> str:
        """A slot's token, from Redis or, while it is lost, from this replica's share."""
        while True:
            token = f"{self._backend.replica}|{secrets.token_hex(6)}"
            try:
                granted, wait = await self._acall("acquire", self.per_minute, token, POLL)
                pause = wait
            except _Lost:
                granted, wait = self._take_alone()
                pause = self._backend.wait_for_retry(wait)  # Redis is asked again meanwhile
            if granted:
                return token
            late = too_late(wait)  # judged, and told, by the whole wait
            if late is not None:
                raise late
            await self._sleep(pause)

    def _take_alone(self) -> tuple[bool, float]:
        now = self._clock()
        self._go_alone(now)
        if self._hold > now:
            return False, self._hold - now
        if len(self._known) + len(self._flying) < self._backend.share(self.per_minute):
            self._alone = True
            return True, 0.0
        wait = min(self._known.values()) + self._window - now if self._known else POLL
        if self._flying:
            wait = min(wait, POLL)
        return False, max(wait, 0.01)

    def _go_alone(self, now: float) -> None:
        """Redis is lost: what was in flight elsewhere at its last reply counts as answered now (those answers
        will not be seen), and what has left the window is forgotten."""
        for _ in range(self._others_flying):
            self._known[LOCAL + secrets.token_hex(6)] = now
        self._others_flying = 0
        self._known = {token: t for token, t in self._known.items() if now - t < self._window}
        if self._synced:
            # What other replicas sent since the last view is unknown (one may have started since), and may
            # have filled the window: count it full from now (and write that back), so that no replica's
            # share lands on a full window.
            gap = self.per_minute - len(self._known) - len(self._flying)
            for _ in range(max(0, gap)):
                self._known[f"{self._backend.replica}|gap{secrets.token_hex(5)}"] = now
            self._alone = True
        self._synced = False
        if self._hold <= now:
            self._hold = 0.0

    def _args(self, epoch: str, extra: Sequence[Arg]) -> list[Arg]:
        return [
            self._clock(),
            self._window,
            self._stale_after,
            REPLICA_TTL,
            self._backend.replica,
            epoch,
            secrets.token_hex(8),
            *extra,
        ]

    def _kept(self) -> list[Arg]:
        """The merge script's arguments: the hold, then each answer this replica knows of, by token."""
        pairs: list[Arg] = [self._hold, MAX_HOLD]
        for token, t in self._known.items():
            if not token.startswith(LOCAL):
                pairs += [token, t]
        return pairs

    def _call(self, name: str, *extra: Arg) -> bool:
        call = self._backend.call
        while True:
            if self._alone:  # first, what was kept alone, whatever the epoch
                self._read(call("merge", self._keys, self._args("", self._kept())))
                self._alone = False
            reply = call(name, self._keys, self._args(self._epoch, extra))
            if reply[0] != "epoch":
                return self._read(reply)
            self._moved(reply[1])

    async def _acall(self, name: str, *extra: Arg) -> tuple[bool, float]:
        call = self._backend.acall

        def args() -> list[Arg]:
            # The acquire script is also told this replica's cap, as of the moment it runs.
            cap = (self._backend.cap(self.per_minute),) if name == "acquire" else ()
            return self._args(self._epoch, (*extra, *cap))

        while True:
            if self._alone:
                self._read(await call("merge", self._keys, lambda: self._args("", self._kept())))
                self._alone = False
            reply = await call(name, self._keys, args)
            if reply[0] != "epoch":
                return self._read(reply), float(reply[1])
            self._moved(reply[1])

    def _moved(self, epoch: str) -> None:
        """Redis's data is not what this limiter last saw (it restarted empty, or was flushed): write back
        what it knows of the window before anything else is asked."""
        log.info("Redis's data was renewed (restart or flush): writing back this replica's view of the window.")
        self._epoch = epoch
        self._go_alone(self._clock())
        self._alone = True
        self._backend.careful()

    def _read(self, reply: list[Any]) -> bool:
        """Take in a script's reply: whether granted; the hold, answers and requests in flight it shows."""
        granted = bool(int(reply[0]))
        self._synced = True
        self._hold = float(reply[3])
        self._others_flying = max(0, int(reply[4]) - len(self._flying))
        self._epoch = reply[5]
        items = reply[6:]
        self._known = {items[i]: float(items[i + 1]) for i in range(0, len(items), 2)}
        return granted
