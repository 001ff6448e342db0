"""The records in a local SQLite file beside the day store (`oauth.sqlite3` in HARDAL_STORE's directory):
for one machine's processes, with the store's file-safety rules — the directory 0700, the file 0600 and
ours (a symlink, another user's file or someone else's database is refused, never touched). Shared by the
processes that share the store, so a token issued by one is honoured by the others."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import private_directory
from .state import Kind, Record

FILENAME = "oauth.sqlite3"
APPLICATION_ID = 0x48414F41  # "HAOA": this file is hardal-mcp's OAuth state
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    body TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_owner ON records (kind, owner);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at);
"""


class SqliteState:
    """`state.State` in a file (see the module docstring). Queries are small and local: they run inline,
    one at a time (a lock), on one connection."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = _open(path)

    async def put(self, kind: Kind, id: str, body: Mapping[str, Any], *, expires_at: float, owner: str = "") -> None:
        now = self._clock()
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM records WHERE expires_at <= ?", (now,))
            self._conn.execute(
                "INSERT OR REPLACE INTO records (kind, id, owner, body, expires_at) VALUES (?, ?, ?, ?, ?)",
                (kind, id, owner, json.dumps(body, separators=(",", ":")), expires_at),
            )

    async def get(self, kind: Kind, id: str) -> Record | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM records WHERE kind = ? AND id = ? AND expires_at > ?", (kind, id, self._clock())
            ).fetchone()
        return _body(row)

    async def take(self, kind: Kind, id: str) -> Record | None:
        with self._lock, self._conn:
            row = self._conn.execute(
                "DELETE FROM records WHERE kind = ? AND id = ? RETURNING body, expires_at", (kind, id)
            ).fetchone()
        if row is None or row[1] <= self._clock():
            return None
        return _body(row)

    async def delete(self, kind: Kind, id: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, id))

    async def owned(self, kind: Kind, owner: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id FROM records WHERE kind = ? AND owner = ? AND expires_at > ?", (kind, owner, self._clock())
            ).fetchall()
        return [row[0] for row in rows]

    async def count(self, kind: Kind) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM records WHERE kind = ? AND expires_at > ?", (kind, self._clock())
            ).fetchone()
        return int(row[0])

    async def aclose(self) -> None:
        with self._lock:
            self._conn.close()


def _body(row: tuple[Any, ...] | None) -> Record | None:
    if row is None:
        return None
    body = json.loads(row[0])
    return body if isinstance(body, dict) else None


def _open(path: Path) -> sqlite3.Connection:
    """The state file, made private (0600 in a 0700 directory) and checked to be ours; ConfigError otherwise."""
    private_directory(path.parent)
    if stat.S_IMODE(os.stat(path.parent).st_mode) & 0o022:
        raise ConfigError(
            f"OAuth state directory {path.parent} is writable by other users; make it private (chmod 700)."
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise ConfigError(f"OAuth state file {path} cannot be opened ({exc.strerror}).") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            raise ConfigError(f"OAuth state file {path} is not a regular file of this user: left as it is.")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        _prepare(conn, path)
    except BaseException:
        conn.close()
        raise
    for suffix in ("-wal", "-shm", "-journal"):  # SQLite gives them the file's mode; make sure of it
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists() and os.stat(sidecar).st_mode & 0o077:
            os.chmod(sidecar, 0o600)
    return conn


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError:
        raise ConfigError(f"OAuth state file {path} is not an SQLite database of hardal-mcp: left as it is.") from None
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise ConfigError(f"OAuth state file {path} is another program's database: left as it is.")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA secure_delete = ON")  # a removed record's bytes are overwritten, not left in free pages
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
