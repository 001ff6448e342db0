"""The authorization server's records, and the small storage protocol both backends implement.

Every record is a JSON object of one `Kind`, found by an id, expiring at a time, and optionally owned (a
grant by its key's `key_id`, a token by its grant), so that revoking an owner finds what it owns. Ids of
bearer secrets (tokens, codes, consent requests) are keyed hashes (`sealing.Sealing.hash`): the storage never
sees a secret it could hand back. Expiry is judged by the provider's clock, so tests move time instead of
waiting; each backend also drops expired records on its own (SQLite on writes, Redis by TTL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

# "spent": a code or refresh token already used, kept (by hash) until it would have expired, so that a second
# use is recognised as a replay.
Kind = Literal["client", "request", "code", "grant", "access", "refresh", "spent"]
Record = dict[str, Any]


class State(Protocol):
    """Where the records live (`sqlite_state.SqliteState`, `redis_state.RedisState`)."""

    async def put(self, kind: Kind, id: str, body: Mapping[str, Any], *, expires_at: float, owner: str = "") -> None:
        """Store (or replace) a record until `expires_at`."""

    async def get(self, kind: Kind, id: str) -> Record | None:
        """The record, or None when absent or expired."""

    async def take(self, kind: Kind, id: str) -> Record | None:
        """Remove the record and return it, atomically: of two callers, only one gets it."""

    async def delete(self, kind: Kind, id: str) -> None:
        """Remove the record if present."""

    async def owned(self, kind: Kind, owner: str) -> list[str]:
        """The ids of the live records of `kind` that `owner` owns."""

    async def count(self, kind: Kind) -> int:
        """How many live records of `kind` there are."""

    async def aclose(self) -> None:
        """Release the connection."""
