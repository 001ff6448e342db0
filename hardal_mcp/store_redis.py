"""Closed days shared by every replica through Redis (HARDAL_REDIS_URL): a read-through layer in front of
each replica's own day store (`store.DayStore`), and the claims by which one replica fetches a day.

* `get` asks the local store first; a day it lacks is read from Redis, checked (the same SHA-256 checksum of
  key, total and body as the file, the same "exactly the total Hardal reported" rule), kept in the local
  store, and served. A day that fails a check is deleted from Redis and fetched again.
* `put` keeps the day locally and in Redis. Only redacted sessions reach either: this layer exists only
  where the file store would (HARDAL_STORE not off, HARDAL_REDACT_PII on), and is handed what the planner
  would store.
* `claim` is a lease (`SET PX` on each day's claim key, taken by a script only when none is held, so that
  a read's days are claimed all together or not at all): the replica that gets it fetches the days, the
  others wait for them to be stored (an answer) or skip them (the background fill).

Why read-through and not Redis alone (`python -m bench.shared_days`, bench/RESULTS.md): a day read from
the local file costs a disk read and a decode; from Redis it costs the same decode plus the body's transfer,
and every replica would pay that on every question. Read-through pays it once per replica and day, keeps
answering from disk when Redis is lost, and leaves Redis's memory to days some replica has not read yet.

Keys: `hardal:day:<key fingerprint>:<hash of the rest of the day's key>` (a hash: total, format, checksum,
body) and `hardal:claim:<same>`; the days' last uses in `hardal:days:used` and sizes in
`hardal:days:size`. A day expires HARDAL_REDIS_DAYS_TTL seconds after its last use; when the bodies pass
HARDAL_REDIS_DAYS_MB, the days used least recently go first. One key's fingerprint is a keyed one-way hash
of the key under the replicas' shared secret: no tenant can name, and so read, another's days.

When Redis does not answer, the local store goes on alone: days are read and kept locally, and every claim
is granted (two replicas may then fetch the same day). It is said once on stderr; Redis is asked again after
RETRY seconds. The URL is never shown."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from .budget_redis import PREFIX, connect_sync
from .config import Settings
from .store import Body, DayKey, DayStore, is_closed, seal, unseal, whole

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

USED = PREFIX + "days:used"  # sorted set: day key -> last use (ms)
SIZES = PREFIX + "days:size"  # hash: day key -> body bytes
RETRY = 5.0  # seconds before a Redis that did not answer is asked again
UNANSWERED = object()  # what `_ask` returns when Redis did not answer

# KEYS: the day, used, sizes. ARGV: now (ms), ttl (ms), cap (bytes, 0: none), total, format, checksum, body.
# Keeps the day, then drops the days unused for a ttl, then the least recently used while over the cap.
_PUT = """
local now, ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'total', ARGV[4], 'format', ARGV[5], 'checksum', ARGV[6], 'body', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], string.len(ARGV[7]))
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - ttl))) do
    redis.call('ZREM', KEYS[2], gone)
    redis.call('HDEL', KEYS[3], gone)
end
local evicted = 0
if cap > 0 then
    local total = 0
    for _, size in ipairs(redis.call('HVALS', KEYS[3])) do total = total + tonumber(size) end
    while total > cap do
        local oldest = redis.call('ZPOPMIN', KEYS[2])
        if #oldest == 0 then break end
        total = total - tonumber(redis.call('HGET', KEYS[3], oldest[1]) or 0)
        redis.call('HDEL', KEYS[3], oldest[1])
        redis.call('DEL', oldest[1])
        evicted = evicted + 1
    end
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return evicted
"""

# KEYS: the day, used. ARGV: now (ms), ttl (ms). The day's fields, its use recorded.
_GET = """
local fields = redis.call('HMGET', KEYS[1], 'total', 'format', 'checksum', 'body')
if fields[4] then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), KEYS[1])
end
return fields
"""

# KEYS: the days' claims. ARGV: the claim's token, its life (ms). All of them taken, or none (0).
_CLAIM = """
for _, claim in ipairs(KEYS) do
    if redis.call('EXISTS', claim) == 1 then return 0 end
end
for _, claim in ipairs(KEYS) do redis.call('SET', claim, ARGV[1], 'PX', tonumber(ARGV[2])) end
return 1
"""

# KEYS: the days' claims. ARGV: the claim's token. Each deleted only by its holder.
_RELEASE = """
for _, claim in ipairs(KEYS) do
    if redis.call('GET', claim) == ARGV[1] then redis.call('DEL', claim) end
end
return 0
"""


class SharedDays:
    """A `store.Days` for replicas: Redis in front of this replica's `DayStore` (None: Redis alone, when the
    local file cannot be used). Thread-safe, as the planner calls it from worker threads; never raises."""

    def __init__(
        self,
        settings: Settings,
        local: DayStore | None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self._ttl = settings.redis_days_ttl
        self._cap = settings.redis_days_mb * 2**20
        self._clock = clock
        self._monotonic = monotonic
        self._redis = connect_sync(settings, binary=True)
        self._put = self._redis.register_script(_PUT)
        self._get = self._redis.register_script(_GET)
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._retry_at = 0.0  # while ahead (monotonic), Redis is not asked: it did not answer
        self._lost = False

    def closed(self, timezone: str, day: date) -> bool:
        return is_closed(timezone, day, self._clock())

    def get(self, key: DayKey) -> pl.DataFrame | None:
        if not self.closed(key.timezone, key.day):
            return None
        if self.local is not None and (sessions := self.local.get(key)) is not None:
            return sessions
        fields = self._ask(
            lambda: self._get(keys=[_day(key), USED], args=[self._ms(self._clock()), self._ms(self._ttl)])
        )
        if fields is UNANSWERED or fields[3] is None:
            return None
        try:
            body = Body(int(fields[1]), int(fields[0]), bytes(fields[2]), bytes(fields[3]))
            sessions = unseal(key, body)
        except ValueError as exc:  # a damaged or foreign entry is never served: dropped, fetched again
            log.warning("A day shared in Redis was dropped: %s.", exc)
            self._ask(lambda: self._redis.delete(_day(key)))
            return None
        if self.local is not None:
            self.local.put_body(key, body)
        return sessions

    def put(self, key: DayKey, sessions: pl.DataFrame, total: int) -> bool:
        if not self.closed(key.timezone, key.day) or not whole(sessions, total):
            return self.local.put(key, sessions, total) if self.local is not None else False  # refused (and said)
        body = seal(key, sessions, total)  # once, for both
        kept = self.local.put_body(key, body) if self.local is not None else False
        if self._cap and len(body.data) > self._cap:
            return kept
        now, ttl = self._ms(self._clock()), self._ms(self._ttl)
        args = (now, ttl, self._cap, body.total, body.format, body.checksum, body.data)
        shared = self._ask(lambda: self._put(keys=[_day(key), USED, SIZES], args=list(args)))
        return kept or shared is not UNANSWERED

    def claim(self, keys: Sequence[DayKey], seconds: float) -> str | None:
        if not keys:
            return ""
        token = secrets.token_hex(8)
        taken = self._ask(lambda: self._claim(keys=[_claim(k) for k in keys], args=[token, self._ms(seconds)]))
        # Redis lost: each replica fetches on its own.
        return token if taken is UNANSWERED or taken else None

    def release(self, keys: Sequence[DayKey], claim: str) -> None:
        if keys:
            self._ask(lambda: self._release(keys=[_claim(k) for k in keys], args=[claim]))

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        with contextlib.suppress(RedisError, OSError):
            self._redis.close()

    # ------------------------------------------------------------------------------------- internals

    def _ask(self, command: Callable[[], Any]) -> Any:
        """The reply of one command; UNANSWERED when Redis does not answer (said once per outage on stderr;
        then Redis is not asked for RETRY seconds)."""
        if self._monotonic() < self._retry_at:
            return UNANSWERED
        try:
            reply = command()
        except (RedisError, OSError) as exc:
            with self._lock:
                self._retry_at = self._monotonic() + RETRY
                lost, self._lost = self._lost, True
            if not lost:
                log.warning(
                    "Redis at HARDAL_REDIS_URL does not answer (%s): closed days are read and kept by this "
                    "replica alone until it does.",
                    type(exc).__name__,
                )
            return UNANSWERED
        if self._lost:
            with self._lock:
                lost, self._lost = self._lost, False
            if lost:
                log.warning("Redis at HARDAL_REDIS_URL answers again: closed days are shared again.")
        return reply

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))


def _name(key: DayKey) -> str:
    rest = orjson.dumps(key.columns()[1:])
    return f"{key.fingerprint}:{hashlib.sha256(rest).hexdigest()[:32]}"


def _day(key: DayKey) -> str:
    return f"{PREFIX}day:{_name(key)}"


def _claim(key: DayKey) -> str:
    return f"{PREFIX}claim:{_name(key)}"
