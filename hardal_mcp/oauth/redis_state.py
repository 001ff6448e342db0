"""The records in Redis (HARDAL_REDIS_URL), so that every replica honours the tokens any of them issued.
Every key is under `hardal:oauth:` and expires with its record; an owner's index and a kind's count expire
with the longest record they list. Connected as the budget connects (`budget_redis.connect_async`): the URL,
which may hold a password, is never shown."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from ..budget_redis import connect_async
from ..config import Settings
from ..errors import ConfigError
from .state import Kind, Record

PREFIX = "hardal:oauth:"


class RedisState:
    """`state.State` in Redis (see the module docstring)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._redis = connect_async(settings)
        self._clock = clock

    def _ttl_ms(self, expires_at: float) -> int:
        return max(1, math.ceil((expires_at - self._clock()) * 1000))

    async def put(self, kind: Kind, id: str, body: Mapping[str, Any], *, expires_at: float, owner: str = "") -> None:
        record = json.dumps({"owner": owner, "expires_at": expires_at, "body": body}, separators=(",", ":"))
        ttl = self._ttl_ms(expires_at)
        async with self._guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_key(kind, id), record, px=ttl)
            pipe.zremrangebyscore(_all(kind), "-inf", self._clock())
            pipe.zadd(_all(kind), {id: expires_at})
            pipe.pexpire(_all(kind), ttl, gt=True)
            pipe.pexpire(_all(kind), ttl, nx=True)
            if owner:
                pipe.sadd(_owner(kind, owner), id)
                pipe.pexpire(_owner(kind, owner), ttl, gt=True)
                pipe.pexpire(_owner(kind, owner), ttl, nx=True)
            await pipe.execute()

    async def get(self, kind: Kind, id: str) -> Record | None:
        async with self._guard():
            return self._live(await self._redis.get(_key(kind, id)))

    async def take(self, kind: Kind, id: str) -> Record | None:
        async with self._guard():
            record = self._live(await self._redis.getdel(_key(kind, id)))
            await self._redis.zrem(_all(kind), id)
        return record

    async def delete(self, kind: Kind, id: str) -> None:
        async with self._guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(_key(kind, id))
            pipe.zrem(_all(kind), id)
            await pipe.execute()

    async def owned(self, kind: Kind, owner: str) -> list[str]:
        async with self._guard():
            ids = sorted(str(i) for i in await self._redis.smembers(_owner(kind, owner)))
            if not ids:
                return []
            present = await self._redis.mget([_key(kind, i) for i in ids])
        return [i for i, record in zip(ids, present, strict=True) if self._live(record) is not None]

    async def count(self, kind: Kind) -> int:
        async with self._guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(_all(kind), "-inf", self._clock())
            pipe.zcard(_all(kind))
            _, count = await pipe.execute()
        return int(count)

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _live(self, raw: Any) -> Record | None:
        if not isinstance(raw, str):
            return None
        record = json.loads(raw)
        if record["expires_at"] <= self._clock():
            return None
        body = record["body"]
        return body if isinstance(body, dict) else None

    def _guard(self) -> _Guard:
        return _Guard()


class _Guard:
    """A Redis failure becomes a ConfigError naming HARDAL_REDIS_URL, never its value (the provider answers
    the client with a server error; the URL may hold a password)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, (RedisError, OSError)):
            raise ConfigError(
                f"Redis at HARDAL_REDIS_URL failed ({type(exc).__name__}): the OAuth state is unavailable."
            ) from None


def _key(kind: Kind, id: str) -> str:
    return f"{PREFIX}{kind}:{id}"


def _all(kind: Kind) -> str:
    return f"{PREFIX}{kind}s"


def _owner(kind: Kind, owner: str) -> str:
    return f"{PREFIX}{kind}s-of:{owner}"
