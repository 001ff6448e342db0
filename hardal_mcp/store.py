"""Closed days of sessions kept on disk, so that asking about the same days again — after a restart, from
another process — costs no upstream request.

One SQLite file (standard library, embedded, no server), shared by every hardal-mcp process of the user.
A row is one complete day of one website as one API key sees it, keyed by (key fingerprint, website id,
target signal id, hybrid flag, time zone, day), with the number of sessions Hardal reported for the day
when it was read. A day read alone carries its page's total; days read together as one run, whose
sessions were checked against the run's exact total, carry each its part of that verified read. `put`
refuses a day whose sessions are not exactly that many distinct sessions, and `get` never serves one (it
is dropped and fetched again): no day is ever answered incomplete. Nothing else is stored, and in particular:

* **only PII-redacted sessions** — the scan planner hands over sessions that went through
  `privacy.redact_frame` (HARDAL_REDACT_PII); the store writes what it is given and never sees raw data;
* **never the API key** — rows name it by its fingerprint (`keys.Fingerprints`), a keyed one-way hash.

Only closed days are stored or served: a day whose local end (in its time zone) is less than 48 hours ago
may still change upstream (late events, sessions still open), so `put` ignores it and `get` answers None.

The file is created with mode 0600 (every directory made for it 0700, whatever the umask; a directory
others may write to is warned about) and capped in size (HARDAL_STORE_MAX_MB): the days used least recently
go first. Every day's body carries a SHA-256 checksum of its key, total and content, verified on every read.

The file is ours only if its SQLite header carries our application id (read as raw bytes, so a damaged
file of ours is still recognised); a missing or empty file becomes a store. Anything else (a text file,
another application's database) is refused with a ConfigError and left byte for byte as it was. A damaged
file of ours is moved aside (`<name>.corrupt-<UTC time>`, with its journal files), never deleted; one of
an older schema is emptied, with a log line (version 1 could keep days emptied; version 2 held JSON
bodies); one of a newer schema is left alone and not used. Nothing that fails a check is ever served: the
day is fetched again.

Each body is the day's frame as Parquet, compressed with zstd level 1 (`frames.encode`, `frames.decode`):
about 32 bytes a session, read straight into the columns every analysis works on; `bench/store_speed.py`
measures it against other formats.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import orjson

from .config import Settings
from .errors import ConfigError, HardalError
from .files import private_directory
from .frames import decode, encode

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

FILENAME = "store.sqlite3"
CLOSED_AFTER = 48 * 3600.0  # seconds after a day's local end before it is stored or served
APPLICATION_ID = 0x4844_5331  # "HDS1" in the SQLite header: a file without it is not ours
SCHEMA_VERSION = 3  # 2: each day carries the total Hardal reported; 3: bodies are Parquet frames
SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_VERSION, _HEADER_APP_ID = 60, 68  # offsets of user_version and application_id (big-endian)
PARQUET = 3  # the body format (1 and 2 were JSON, of schema version 2)
BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's transaction
TOUCH_EVERY = 60.0  # a day's last use is rewritten at most this often (reads stay reads)
ROW_OVERHEAD = 256  # bytes counted per day beyond its body (key columns, b-tree), towards the cap
_SIDECARS = ("-wal", "-shm", "-journal")
# Primary SQLite result codes that mean the file itself is damaged or not a database.
_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB

_SCHEMA = """
CREATE TABLE IF NOT EXISTS days (
    fingerprint TEXT NOT NULL,
    website_id TEXT NOT NULL,
    target TEXT NOT NULL,
    hybrid INTEGER NOT NULL,
    timezone TEXT NOT NULL,
    day TEXT NOT NULL,
    total INTEGER NOT NULL,
    format INTEGER NOT NULL,
    size INTEGER NOT NULL,
    stored REAL NOT NULL,
    used REAL NOT NULL,
    checksum BLOB NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (fingerprint, website_id, target, hybrid, timezone, day)
);
CREATE INDEX IF NOT EXISTS days_used ON days (used);
"""
_SELECT_DAY = (
    "SELECT rowid, format, total, checksum, body, used FROM days"
    " WHERE fingerprint = ? AND website_id = ? AND target = ? AND hybrid = ? AND timezone = ? AND day = ?"
)


@dataclass(frozen=True, slots=True)
class DayKey:
    """Which day of which data: the API key (by fingerprint), the website and signal as the API is asked
    for them (`target_signal_id` None means the website itself), the hybrid flag, the time zone that
    cuts the days, and the day."""

    fingerprint: str
    website_id: str
    target_signal_id: str | None
    is_hybrid: bool
    timezone: str
    day: date

    def columns(self) -> tuple[str, str, str, int, str, str]:
        """The key as stored: no target means the website, so both spellings find the same row."""
        return (
            self.fingerprint,
            self.website_id,
            self.target_signal_id or self.website_id,
            int(self.is_hybrid),
            self.timezone,
            self.day.isoformat(),
        )


class Days(Protocol):
    """What reading a window needs of a day store: `DayStore` (this machine's processes) or
    `store_redis.SharedDays` (replicas on several machines, through Redis, in front of a DayStore)."""

    def closed(self, timezone: str, day: date) -> bool: ...

    def get(self, key: DayKey) -> pl.DataFrame | None: ...

    def put(self, key: DayKey, sessions: pl.DataFrame, total: int) -> bool: ...

    def claim(self, keys: Sequence[DayKey], seconds: float) -> str | None:
        """Take the right to fetch the days `keys` for `seconds`, all of them or none (so that two reads of
        overlapping windows never each hold a day the other waits for): a claim to `release`, or None while
        another replica holds one of them (it is fetching it: wait for it to be stored, or skip it); "" from
        a store that coordinates nothing."""
        ...

    def release(self, keys: Sequence[DayKey], claim: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Body:
    """A day as kept: the body's format, the total it was checked against, its checksum and its bytes."""

    format: int
    total: int
    checksum: bytes
    data: bytes


def seal(key: DayKey, sessions: pl.DataFrame, total: int) -> Body:
    """The day's body, checksummed for `key` and `total`."""
    data = encode(sessions)
    return Body(PARQUET, total, _checksum(key.columns(), PARQUET, total, data), data)


def unseal(key: DayKey, body: Body) -> pl.DataFrame:
    """The sessions of a body kept for `key`; ValueError saying why it cannot be served (a checksum that
    fails, a body unreadable or not the total Hardal reported)."""
    if body.format != PARQUET or body.checksum != _checksum(key.columns(), body.format, body.total, body.data):
        raise ValueError("a stored day failed its checksum")
    try:
        sessions = decode(body.data)
    except ValueError as exc:
        raise ValueError(f"a stored day could not be read ({exc})") from None
    if not whole(sessions, body.total):
        raise ValueError(f"a stored day does not hold the {body.total:,} sessions Hardal reported for it")
    return sessions


def is_closed(timezone: str, day: date, now: float) -> bool:
    """Whether `day` ended, in `timezone`, at least 48 hours before `now`: only such days are stored or served."""
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    end = datetime.combine(day + timedelta(days=1), clock_time.min, tzinfo=zone)
    return end.timestamp() + CLOSED_AFTER <= now


@dataclass(frozen=True, slots=True)
class SiteStatus:
    """The days kept for one website as one key sees it."""

    fingerprint: str
    website_id: str
    days: int
    bytes: int
    oldest: date
    newest: date


@dataclass(frozen=True, slots=True)
class StoreStatus:
    path: Path
    bytes: int  # on disk: the file and its write-ahead log
    max_bytes: int
    days: int
    websites: int
    oldest: date | None
    newest: date | None
    sites: tuple[SiteStatus, ...]


def default_path(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The per-user cache location of the store: `$XDG_CACHE_HOME/hardal-mcp` (`~/.cache/hardal-mcp`)
    on Linux and other POSIX systems, `~/Library/Caches/hardal-mcp` on macOS,
    `%LOCALAPPDATA%\\hardal-mcp\\Cache` on Windows."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        local = env.get("LOCALAPPDATA", "").strip()
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "hardal-mcp" / "Cache" / FILENAME
    if platform == "darwin":
        return Path.home() / "Library" / "Caches" / "hardal-mcp" / FILENAME
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # the spec ignores relative ones
    return base / "hardal-mcp" / FILENAME


def store_path(setting: str, env: Mapping[str, str] | None = None, platform: str | None = None) -> Path | None:
    """Where HARDAL_STORE puts the store: None for `off`; the user cache for `auto`; otherwise the path
    given — a directory (existing, or written with a trailing separator) holds `store.sqlite3`."""
    if setting == "off":
        return None
    if setting == "auto":
        return default_path(env, platform)
    path = Path(setting).expanduser()
    if setting.endswith(("/", os.sep)) or path.is_dir():
        path = path / FILENAME
    return path.absolute()


class StoreRefused(ConfigError):
    """HARDAL_STORE names a file that is not a hardal-mcp store: it is never touched."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"HARDAL_STORE names {path}: {what}, not a hardal-mcp day store. It is left as it is; point "
            "HARDAL_STORE at another file or directory, or set HARDAL_STORE=off."
        )


class StoreTooNew(ConfigError):
    """The file is a store of a newer hardal-mcp: left as it is, and not used."""

    def __init__(self, path: Path, version: int) -> None:
        super().__init__(
            f"The day store {path} was written by a newer hardal-mcp (schema version {version}; this one reads "
            f"{SCHEMA_VERSION}); it is left as it is and not used. Upgrade hardal-mcp, or point HARDAL_STORE "
            "elsewhere."
        )


class StoreFailed(HardalError):
    """The store could not be opened, or `status`/`clear` could not do its work; the message says why."""


def check_store(settings: Settings) -> None:
    """Before serving: StoreRefused when the store the server would use (HARDAL_STORE, with redaction on)
    is a file that is not ours, so that the server refuses to start instead of running without it."""
    path = store_path(settings.store)
    if path is not None and settings.redact_pii:
        _claimed(path)


class DayStore:
    """Complete closed days of redacted sessions on disk (see the module docstring).

    Thread-safe: one connection, used under a lock; bodies are encoded and decoded outside it, so several
    threads (`anyio.to_thread.run_sync`) can decode days at once. Several processes may share the file
    (WAL journal, busy timeout). `get` and `put` never raise: a store that fails only costs requests.
    Opening raises StoreRefused (not our file), StoreTooNew (a newer version's) or StoreFailed; `status`
    and `clear` raise StoreFailed when they cannot do their work."""

    def __init__(self, path: Path, *, max_bytes: int = 512 * 2**20, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).absolute()
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._warned: set[str] = set()
        with self._lock:
            try:
                self._connection()
            except (OSError, sqlite3.Error) as exc:  # an unwritable directory, a full disk, a lock held too long
                raise StoreFailed(f"Day store {self.path} unavailable ({type(exc).__name__}: {exc}).") from exc

    @classmethod
    def open(cls, settings: Settings) -> DayStore | None:
        """The store HARDAL_STORE names; None when it is `off` or cannot be used (said once on stderr), and
        when HARDAL_REDACT_PII is off: the store holds redacted sessions only, so that unmasked personal
        data never reaches the disk, nor a later run with redaction on."""
        path = store_path(settings.store)
        if path is None or not settings.redact_pii:
            return None
        try:
            return cls(path, max_bytes=settings.store_max_mb * 2**20)
        except HardalError as exc:
            log.warning("%s Days are fetched every time.", exc.message)
            return None

    # ------------------------------------------------------------------------------------------ the API

    def closed(self, timezone: str, day: date) -> bool:
        """Whether `day` ended, in `timezone`, at least 48 hours ago: only such days are stored or served."""
        return is_closed(timezone, day, self._clock())

    def get(self, key: DayKey) -> pl.DataFrame | None:
        """The sessions of a stored day, in the order they were put; None if absent, too young, unreadable,
        or not the total Hardal reported for it."""
        if not self.closed(key.timezone, key.day):
            return None
        columns = key.columns()
        with self._lock:
            row = self._guard(lambda conn: self._read(conn, columns))
        if row is None:
            return None
        rowid, body_format, total, checksum, data = row
        try:
            return unseal(key, Body(body_format, total, checksum, data))
        except ValueError as exc:
            self._discard(rowid, str(exc))
            return None

    def put(self, key: DayKey, sessions: pl.DataFrame, total: int) -> bool:
        """Keep the day `key`, read whole: `total` is the number of sessions Hardal reported for it (see the
        module docstring), replacing what was kept; True once written. Refused, and logged, unless
        `sessions` are exactly `total` distinct sessions; not kept either (False) when the day is younger
        than 48 h or larger than the whole cap, or the file fails. Sessions must be redacted already."""
        if not self.closed(key.timezone, key.day):
            return False
        if not whole(sessions, total):
            self._warn(
                "incomplete",
                f"Day store {self.path}: refused to keep {key.day}: {sessions.height:,} sessions "
                f"({sessions.get_column('id').n_unique():,} distinct) where Hardal reported {total:,}.",
            )
            return False
        return self.put_body(key, seal(key, sessions, total))

    def put_body(self, key: DayKey, body: Body) -> bool:
        """`put` for a body already checked whole (`put` seals one; `store_redis` keeps one another replica
        read, after `unseal`)."""
        if not self.closed(key.timezone, key.day) or len(body.data) + ROW_OVERHEAD > self.max_bytes:
            return False
        now = self._clock()
        values = (*key.columns(), body.total, body.format, len(body.data), now, now, body.checksum, body.data)

        def write(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO days (fingerprint, website_id, target, hybrid, timezone, day, total,"
                    " format, size, stored, used, checksum, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                evicted = self._evict(conn)
            if evicted:
                conn.executescript("PRAGMA incremental_vacuum;")  # the freed pages back to the file system
            return True

        with self._lock:
            return self._guard(write) is True

    def claim(self, keys: Sequence[DayKey], seconds: float) -> str | None:
        """Always granted: on one machine, processes that fetch the same day at once only store it twice."""
        return ""

    def release(self, keys: Sequence[DayKey], claim: str) -> None:
        return None

    def status(self) -> StoreStatus:
        """What is kept: bytes on disk, days, websites, the oldest and newest day, per key and website."""
        query = (
            "SELECT fingerprint, website_id, count(*), sum(size), min(day), max(day) FROM days"
            " GROUP BY fingerprint, website_id ORDER BY fingerprint, website_id"
        )
        with self._lock:
            rows = self._checked("reading what it keeps", lambda conn: conn.execute(query).fetchall())
        sites = tuple(
            SiteStatus(fp, site, days, size + days * ROW_OVERHEAD, date.fromisoformat(lo), date.fromisoformat(hi))
            for fp, site, days, size, lo, hi in rows
        )
        return StoreStatus(
            path=self.path,
            bytes=self._disk_bytes(),
            max_bytes=self.max_bytes,
            days=sum(s.days for s in sites),
            websites=len({s.website_id for s in sites}),
            oldest=min((s.oldest for s in sites), default=None),
            newest=max((s.newest for s in sites), default=None),
            sites=sites,
        )

    def clear(self) -> int:
        """Forget every day; the number of days removed."""

        def wipe(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                removed: int = conn.execute("DELETE FROM days").rowcount
            conn.executescript("PRAGMA incremental_vacuum;")  # executescript: to the end, not one page
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return max(removed, 0)

        with self._lock:
            removed: int = self._checked("clearing it", wipe)
            return removed

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def __enter__(self) -> DayStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------- internals

    def _read(self, conn: sqlite3.Connection, columns: tuple[Any, ...]) -> tuple[int, int, int, bytes, bytes] | None:
        row = conn.execute(_SELECT_DAY, columns).fetchone()
        if row is None:
            return None
        now = self._clock()
        if now - row[5] >= TOUCH_EVERY:  # least recently used goes first when the cap is reached
            with _transaction(conn):
                conn.execute("UPDATE days SET used = ? WHERE rowid = ?", (now, row[0]))
        return row[0], row[1], row[2], row[3], row[4]

    def _evict(self, conn: sqlite3.Connection) -> int:
        """Drop the least recently used days until the kept bodies fit the cap; the number dropped."""
        total, count = conn.execute("SELECT coalesce(sum(size), 0), count(*) FROM days").fetchone()
        excess = total + count * ROW_OVERHEAD - self.max_bytes
        if excess <= 0:
            return 0
        doomed = []
        for rowid, size in conn.execute("SELECT rowid, size FROM days ORDER BY used, rowid"):
            if excess <= 0:
                break
            doomed.append((rowid,))
            excess -= size + ROW_OVERHEAD
        conn.executemany("DELETE FROM days WHERE rowid = ?", doomed)
        return len(doomed)

    def _discard(self, rowid: int, why: str) -> None:
        self._warn("day", f"Day store {self.path}: {why}; it is dropped and will be fetched again.")
        with self._lock:
            self._guard(lambda conn: conn.execute("DELETE FROM days WHERE rowid = ?", (rowid,)))

    def _guard(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `action` on the connection (lock held); on a damaged file set it aside, on any other failure
        (a lock held too long, a full disk, a file replaced by one not ours) log it; then None, as if
        nothing were stored."""
        try:
            return action(self._connection())
        except ConfigError as exc:
            self._warn("refused", f"{exc.message} Continuing without it.")
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
        return None

    def _checked(self, doing: str, action: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `action` for `status` or `clear` (lock held): a failure is raised as StoreFailed saying what
        failed (a damaged file is set aside first), ConfigError as it is; nothing is logged."""
        try:
            return action(self._connection())
        except (sqlite3.Error, OSError) as exc:
            if _is_corruption(exc):
                self._set_aside(str(exc))
            raise StoreFailed(f"Day store {self.path}: {doing} failed ({type(exc).__name__}: {exc}).") from exc

    def _failed(self, exc: BaseException) -> None:
        if _is_corruption(exc):
            self._set_aside(str(exc))
            return
        self._warn("error", f"Day store {self.path} failed ({type(exc).__name__}: {exc}); continuing without it.")

    def _connection(self) -> sqlite3.Connection:
        """The open connection, reopened when the file was replaced or removed (another process set it
        aside or cleared it) — so that nobody keeps writing to a file nobody reads."""
        inode = _inode(self.path)
        if self._conn is not None and inode == self._inode and inode is not None:
            return self._conn
        self._disconnect()
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            self._set_aside(str(exc))
        return self._connect()  # a fresh file: a failure now is not about its content

    def _connect(self) -> sqlite3.Connection:
        """Open the file, after checking from its raw header that it is ours (or absent, or empty)."""
        self._private_directory()
        if (version := _claimed(self.path)) is not None and version > SCHEMA_VERSION:
            raise StoreTooNew(self.path, version)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.chmod(self.path, 0o600)
        finally:
            os.close(fd)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False, cached_statements=16
        )
        try:
            _prepare(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn, self._inode = conn, _inode(self.path)
        for suffix in _SIDECARS:  # SQLite gives them the file's mode; make sure of it
            sidecar = self.path.with_name(self.path.name + suffix)
            with contextlib.suppress(OSError):
                if os.stat(sidecar).st_mode & 0o077:
                    os.chmod(sidecar, 0o600)
        return conn

    def _private_directory(self) -> None:
        """Make the file's directory (0700, see `private_directory`); warn once when others may write to it:
        they could replace the store, or its journal files."""
        directory = self.path.parent
        private_directory(directory)
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        if mode & 0o022:
            self._warn(
                "directory",
                f"Day store directory {directory} is writable by other users (mode {mode:o}): they could replace "
                "the store. Make it private (chmod 700) or point HARDAL_STORE elsewhere.",
            )

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = self._inode = None

    def _set_aside(self, reason: str) -> None:
        """Move a damaged store of ours out of the way, with its journal files, so that a fresh one takes
        its place (lock held). Never deletes, and never moves a file that is not ours."""
        damaged = self._inode or _inode(self.path)
        self._disconnect()
        if damaged is None or _inode(self.path) != damaged:  # another process set it aside already
            return
        try:
            version = _claimed(self.path)
        except ConfigError:  # replaced meanwhile by a file not ours: opening it again says so
            return
        if version is None or version > SCHEMA_VERSION:  # empty, or a newer version's: not ours to judge
            return
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            for suffix in (*_SIDECARS, ""):  # the journal first: a new file must not meet the old one's journal
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
        except OSError as exc:
            self._warn("file", f"Day store {self.path} is damaged ({reason}) and could not be moved aside ({exc}).")
            return
        self._warn("file", f"Day store {self.path} is damaged ({reason}); moved aside to {aside}, starting afresh.")

    def _disk_bytes(self) -> int:
        total = 0
        for suffix in ("", *_SIDECARS):
            with contextlib.suppress(OSError):
                total += os.stat(self.path.with_name(self.path.name + suffix)).st_size
        return total

    def _warn(self, kind: str, message: str) -> None:
        """Each kind of trouble is logged once as a warning per store object, then at debug level."""
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        log.log(level, message)


def _claimed(path: Path) -> int | None:
    """The schema version in the raw header of the store at `path`; None when the file is absent or empty
    (it may become a store). StoreRefused for anything else not marked with our application id."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe would block the read, a device is no store
            raise StoreRefused(path, "not a regular file")
        with open(path, "rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        return None
    if not header:
        return None
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        raise StoreRefused(path, "a file that is not a SQLite database")
    if int.from_bytes(header[_HEADER_APP_ID : _HEADER_APP_ID + 4], "big") != APPLICATION_ID:
        raise StoreRefused(path, "another application's SQLite database")
    return int.from_bytes(header[_HEADER_VERSION : _HEADER_VERSION + 4], "big")


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Check that the file is a store of this version, making it one if it is empty, and emptying it if
    it is an older version's."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]  # the first read: damage fails here
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0 and version == 0:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreRefused(path, "another application's SQLite database")  # written since it was checked
        conn.execute("PRAGMA page_size = 16384")  # these two take effect only while the file has no tables
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        with _transaction(conn):
            if conn.execute("PRAGMA application_id").fetchone()[0] == 0:  # not made meanwhile by another process
                _create(conn)
        app_id, version = APPLICATION_ID, SCHEMA_VERSION
    if app_id != APPLICATION_ID:
        raise StoreRefused(path, "another application's SQLite database")
    if version < SCHEMA_VERSION:
        version = _upgrade(conn, path)
    if version > SCHEMA_VERSION:
        raise StoreTooNew(path, version)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # a crash may lose the last days written, never corrupt
    conn.execute("PRAGMA journal_size_limit = 16777216")  # the journal left on disk between checkpoints


def _create(conn: sqlite3.Connection) -> None:
    for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _upgrade(conn: sqlite3.Connection, path: Path) -> int:
    """Empty a store of an older version (version 1 could keep days emptied by a bug, version 2 held JSON
    bodies) and make it this version's; the version the file has now. In one transaction, re-checked
    inside it, so that processes upgrading at once drop the days only once."""
    with _transaction(conn):
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return version
        conn.execute("DROP TABLE IF EXISTS days")
        _create(conn)
    conn.executescript("PRAGMA incremental_vacuum;")
    log.warning(
        "Day store %s was written by an older hardal-mcp (schema version %d), in a format this one does not "
        "read (and version 1 could keep days incomplete): its days are dropped and will be fetched again.",
        path,
        version,
    )
    return SCHEMA_VERSION


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def whole(sessions: pl.DataFrame, total: int) -> bool:
    """Whether `sessions` are exactly `total` distinct sessions: a day read whole, once each."""
    return sessions.height == total and sessions.get_column("id").n_unique() == total


def _is_corruption(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in _CORRUPT_CODES


def _checksum(columns: tuple[Any, ...], body_format: int, total: int, body: bytes) -> bytes:
    """SHA-256 of the key, the total and the body: a body is only ever served for the key it was stored
    under, with the total it was checked against.
    (SHA-256 rather than blake2b: hardware-accelerated on current CPUs, twice as fast here.)"""
    digest = hashlib.sha256()
    digest.update(orjson.dumps([*columns, body_format, total]))
    digest.update(body)
    return digest.digest()
