"""The day store: exact round trips, only closed days, only whole days (each checked against the total Hardal
reported), the LRU size cap, file and directory modes, damage detected (never served) and set aside, files
not ours refused and left untouched, older and newer versions, several threads and processes on one file,
where HARDAL_STORE puts it, and `hardal-mcp store status|clear` (which fail loudly)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from hardal_mcp import store as store_module
from hardal_mcp.config import Settings
from hardal_mcp.frames import from_sessions as frame
from hardal_mcp.frames import to_sessions
from hardal_mcp.keys import Fingerprints
from hardal_mcp.models import Session
from hardal_mcp.store import (
    APPLICATION_ID,
    CLOSED_AFTER,
    FILENAME,
    SCHEMA_VERSION,
    DayKey,
    DayStore,
    StoreRefused,
    StoreTooNew,
    decode,
    default_path,
    encode,
    store_path,
)

from .conftest import ROOT, make_settings

TZ = "Europe/Istanbul"
DAY = date(2026, 10, 1)
# Well after DAY (and every day the tests use), so they are all closed unless a test says otherwise.
LATER = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
FP = "0123456789ab"


class Clock:
    def __init__(self, now: float = LATER) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def key(day: date = DAY, **overrides: object) -> DayKey:
    values: dict[str, object] = {
        "fingerprint": FP,
        "website_id": "site",
        "target_signal_id": None,
        "is_hybrid": False,
        "timezone": TZ,
        "day": day,
    }
    values.update(overrides)
    return DayKey(**values)  # type: ignore[arg-type]


def sessions(n: int = 50, tag: str = "s") -> list[Session]:
    zones = [UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-3, minutes=-30)), None]
    out = []
    for i in range(n):
        zone = zones[i % len(zones)]
        out.append(
            Session(
                id=f"{tag}_{i}",
                visitor_id=None if i % 7 == 0 else f"v_{i % 13}",
                started_at=None if i % 11 == 0 else datetime(2026, 10, 1, 10, i % 60, i % 60, i * 7, tzinfo=zone),
                duration=None if i % 5 == 0 else i * 1.25,
                page_views=None if i % 9 == 0 else i % 4,
                events=None if i % 8 == 0 else i * 3,
                pages=[] if i % 6 == 0 else ["/", f"/p/{i % 4}", "/cart?token=[redacted]"][: 1 + i % 3],
                browser=None if i % 10 == 0 else ["Chrome", "Safari", "Firefox"][i % 3],
                os=["iOS", "Android", None][i % 3],
                device=["mobile", "desktop"][i % 2],
                country=None if i % 4 == 0 else ["Türkiye", "Deutschland", "日本"][i % 3],
                fields={} if i % 3 == 0 else {"utm_source": ["google", "newsletter"][i % 2], "note": "é ✓ 𝄞"},
            )
        )
    return out


def assert_exact(frame: pl.DataFrame | None, want: list[Session]) -> None:
    """Every field equal, in order, and each start with the same offset (or none): `==` on aware datetimes
    ignores the offset, so it is checked on its own."""
    assert frame is not None
    got = to_sessions(frame)
    assert got == want
    for a, b in zip(got, want, strict=True):
        assert (a.started_at is None) == (b.started_at is None)
        if a.started_at is not None and b.started_at is not None:
            assert a.started_at.utcoffset() == b.started_at.utcoffset()
            assert (a.started_at.tzinfo is None) == (b.started_at.tzinfo is None)
        assert type(a.duration) is type(b.duration)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / FILENAME


@pytest.fixture
def day_store(path: Path):
    with DayStore(path, clock=Clock()) as opened:
        yield opened


# ------------------------------------------------------------------------------------------- round trip


def test_a_day_comes_back_exactly(day_store: DayStore) -> None:
    day = sessions()
    day_store.put(key(), frame(day), len(day))
    assert_exact(day_store.get(key()), day)


def test_it_comes_back_exactly_after_a_restart(path: Path) -> None:
    day = sessions()
    with DayStore(path, clock=Clock()) as first:
        first.put(key(), frame(day), len(day))
    with DayStore(path, clock=Clock()) as again:
        assert_exact(again.get(key()), day)


def test_values_columns_cannot_hold_are_kept_as_readable_values(day_store: DayStore) -> None:
    # A lone surrogate (json.loads lets one through from an escaped body) and an integer beyond 64 bits.
    odd = [
        Session("odd", "v\ud800x", None, None, 2**70, -(2**70), ["/\udfff"], None, None, None, None, {"k": "\ud83d"})
    ]
    day_store.put(key(), frame(odd), len(odd))
    kept = [Session("odd", "v?x", None, None, None, None, ["/?"], None, None, None, None, {"k": "?"})]
    assert_exact(day_store.get(key()), kept)


def test_an_empty_day_is_a_day(day_store: DayStore) -> None:
    day_store.put(key(), frame([]), 0)
    assert_exact(day_store.get(key()), [])


def test_the_target_signal_defaults_to_the_website(day_store: DayStore) -> None:
    day_store.put(key(target_signal_id=None), frame(sessions(3)), 3)
    assert_exact(day_store.get(key(target_signal_id="site")), sessions(3))
    assert day_store.get(key(target_signal_id="other")) is None


@pytest.mark.parametrize(
    "other",
    [
        {"fingerprint": "ffffffffffff"},
        {"website_id": "site2"},
        {"is_hybrid": True},
        {"timezone": "UTC"},
        {"day": DAY + timedelta(days=1)},
    ],
)
def test_every_part_of_the_key_tells_days_apart(day_store: DayStore, other: dict[str, object]) -> None:
    day_store.put(key(), frame(sessions(3)), 3)
    assert day_store.get(key(**other)) is None


def test_put_replaces_the_day(day_store: DayStore) -> None:
    day_store.put(key(), frame(sessions(5, "old")), 5)
    day_store.put(key(), frame(sessions(3, "new")), 3)
    assert_exact(day_store.get(key()), sessions(3, "new"))
    assert day_store.status().days == 1


_text = st.text(max_size=12)
_maybe_text = st.none() | _text
_offsets = st.none() | st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_started = st.none() | st.builds(
    lambda dt, tz: dt.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    _offsets,
)
_session = st.builds(
    Session,
    id=st.text(min_size=1, max_size=12),
    visitor_id=_maybe_text,
    started_at=_started,
    duration=st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    page_views=st.none() | st.integers(-(2**63), 2**63 - 1),
    events=st.none() | st.integers(0, 2**40),
    pages=st.lists(_text, max_size=4),
    browser=_maybe_text,
    os=_maybe_text,
    device=_maybe_text,
    country=_maybe_text,
    fields=st.dictionaries(_text, _text, max_size=3),
)


@hypothesis_settings(max_examples=200)
@given(st.lists(_session, max_size=8))
def test_the_body_format_round_trips_any_sessions(day: list[Session]) -> None:
    assert_exact(decode(encode(frame(day))), day)


# ------------------------------------------------------------------------------------- closed days only


def test_closed_means_48_hours_after_the_local_end_of_the_day(path: Path) -> None:
    end = datetime(2026, 10, 2, tzinfo=timezone(timedelta(hours=3))).timestamp()  # Istanbul is UTC+3
    clock = Clock(end + CLOSED_AFTER)
    probe = DayStore(path, clock=clock)
    assert probe.closed(TZ, DAY)
    clock.now -= 1
    assert not probe.closed(TZ, DAY)
    # The same date ends 25 hours apart in the first and the last time zone.
    clock.now = datetime(2026, 10, 2, tzinfo=UTC).timestamp() + CLOSED_AFTER
    assert probe.closed("Pacific/Kiritimati", DAY)  # UTC+14: ended earlier
    assert not probe.closed("Pacific/Pago_Pago", DAY)  # UTC-11: ends later
    assert not probe.closed("Not/AZone", DAY)


def test_days_younger_than_48_hours_are_never_stored(path: Path) -> None:
    clock = Clock(datetime(2026, 10, 2, 12, tzinfo=UTC).timestamp())  # DAY ended 33 hours ago in Istanbul
    with DayStore(path, clock=clock) as young:
        young.put(key(), frame(sessions(3)), 3)
        assert young.status().days == 0
        assert young.get(key()) is None


def test_days_younger_than_48_hours_are_never_served(path: Path) -> None:
    clock = Clock()
    with DayStore(path, clock=clock) as day_store:
        day_store.put(key(), frame(sessions(3)), 3)
        clock.now = datetime(2026, 10, 2, 12, tzinfo=UTC).timestamp()  # a clock set back
        assert day_store.get(key()) is None
        clock.now = LATER
        assert_exact(day_store.get(key()), sessions(3))


# --------------------------------------------------------------------------------------- size cap (LRU)


def test_the_least_recently_used_days_go_when_the_cap_is_reached(path: Path) -> None:
    one_day = len(encode(frame(sessions(100, DAY.isoformat())))) + store_module.ROW_OVERHEAD
    clock = Clock()
    with DayStore(path, max_bytes=3 * one_day + 100, clock=clock) as day_store:
        days = [DAY + timedelta(days=i) for i in range(4)]
        for d in days[:3]:
            clock.now += 120
            day_store.put(key(d), frame(sessions(100, d.isoformat())), 100)
        clock.now += 120
        assert day_store.get(key(days[0])) is not None  # the first day is used again: now the second is oldest
        clock.now += 120
        day_store.put(key(days[3]), frame(sessions(100, days[3].isoformat())), 100)
        assert day_store.get(key(days[1])) is None
        for d in (days[0], days[2], days[3]):
            assert_exact(day_store.get(key(d)), sessions(100, d.isoformat()))
        status = day_store.status()
        assert status.days == 3
        assert sum(site.bytes for site in status.sites) <= day_store.max_bytes


def test_a_day_larger_than_the_whole_cap_is_not_stored(path: Path) -> None:
    with DayStore(path, max_bytes=1000, clock=Clock()) as day_store:
        day_store.put(key(), frame(sessions(100)), 100)
        assert day_store.get(key()) is None
        assert day_store.status().days == 0


def test_evicted_space_goes_back_to_the_file_system(path: Path) -> None:
    clock = Clock()
    with DayStore(path, max_bytes=40 * 2**20, clock=clock) as day_store:
        for i in range(6):
            day_store.put(key(DAY + timedelta(days=i)), frame(sessions(3000, str(i))), 3000)
        big = day_store.status().bytes
        assert day_store.clear() == 6
        assert day_store.status().bytes < big / 4


# ------------------------------------------------------------------------------------------- file modes


def test_the_file_and_its_journal_are_private(day_store: DayStore, path: Path) -> None:
    day_store.put(key(), frame(sessions(3)), 3)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    files = [p for p in path.parent.iterdir() if p.name.startswith(FILENAME)]
    assert {p.name for p in files} >= {FILENAME, FILENAME + "-wal", FILENAME + "-shm"}
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


def test_an_existing_file_readable_by_others_is_made_private(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    with DayStore(path, clock=Clock()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_file_never_holds_the_api_key(tmp_path: Path) -> None:
    secret = SecretStr("hk_live_SECRET_123456")
    path = tmp_path / FILENAME
    with DayStore(path, clock=Clock()) as day_store:
        fingerprint = Fingerprints.ephemeral().of(secret)
        day_store.put(key(fingerprint=fingerprint), frame(sessions(10)), 10)
        assert day_store.status().sites[0].fingerprint == fingerprint
    for file in tmp_path.iterdir():
        assert b"SECRET" not in file.read_bytes()


# --------------------------------------------------------------------------------------- totals kept


def test_put_refuses_a_day_that_is_not_its_total(day_store: DayStore, caplog: pytest.LogCaptureFixture) -> None:
    three = sessions(3)
    for day, total in [(three, 4), (three, 2), ([*three, three[0]], 4), ([], 1)]:
        assert day_store.put(key(), frame(day), total) is False
        assert day_store.get(key()) is None
    assert day_store.status().days == 0
    (message,) = warnings_of(caplog)  # once per store, however many days it refuses
    assert "refused" in message and "Hardal reported 4" in message
    assert day_store.put(key(), frame(three), 3) is True


def forge(path: Path, day: list[Session], total: int) -> None:
    """Rewrite the stored DAY as a `put` without its check would have: a valid checksum over a wrong day."""
    columns = key().columns()
    body = encode(frame(day))
    checksum = store_module._checksum(columns, store_module.PARQUET, total, body)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE days SET total = ?, body = ?, size = ?, checksum = ?, format = ? WHERE day = ?",
            (total, body, len(body), checksum, store_module.PARQUET, DAY.isoformat()),
        )


@pytest.mark.parametrize("day", [sessions(150, "d0"), [*sessions(199, "d0"), sessions(1, "d0")[0]], []])
def test_a_stored_day_short_of_its_total_is_never_served(
    path: Path, day: list[Session], caplog: pytest.LogCaptureFixture
) -> None:
    fill(path, days=2)
    forge(path, day, 200)
    with DayStore(path, clock=Clock()) as day_store:
        assert day_store.get(key()) is None
        assert day_store.status().days == 1  # dropped, to be fetched again
        assert_exact(day_store.get(key(DAY + timedelta(days=1))), sessions(200, "d1"))
    (message,) = warnings_of(caplog)
    assert "does not hold the 200 sessions" in message


# --------------------------------------------------------------------------------- damaged, not ours


def fill(path: Path, days: int = 5, n: int = 200) -> None:
    with DayStore(path, clock=Clock()) as day_store:
        for i in range(days):
            day_store.put(key(DAY + timedelta(days=i)), frame(sessions(n, f"d{i}")), n)
    # Closing the last connection checkpoints the journal into the file and removes it.
    assert not Path(f"{path}-wal").exists()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hardal_mcp.store" and r.levelno >= logging.WARNING]


def files_beside(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}


def sqlite_file(*statements: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.commit()

    return make


NOT_OURS = {
    "a text file": lambda p: p.write_text("call the bank on monday\n"),
    "garbage": lambda p: p.write_bytes(os.urandom(50_000)),
    "a few bytes": lambda p: p.write_bytes(b"SQLite"),
    "a named pipe": os.mkfifo,
    "a database with tables": sqlite_file("CREATE TABLE notes (x)", "INSERT INTO notes VALUES (1)"),
    "an empty database": sqlite_file("CREATE TABLE t (x)", "DROP TABLE t"),
    "another application id": sqlite_file("PRAGMA application_id = 42", "CREATE TABLE other (y)"),
    "our version, no id": sqlite_file(f"PRAGMA user_version = {SCHEMA_VERSION}", "CREATE TABLE days (y)"),
}


@pytest.mark.parametrize("make", NOT_OURS.values(), ids=NOT_OURS.keys())
def test_a_file_not_ours_is_refused_and_left_as_it_was(
    path: Path, make: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    path.parent.mkdir(parents=True)
    make(path)
    before = files_beside(path)
    with pytest.raises(StoreRefused) as refused:
        DayStore(path, clock=Clock())
    assert str(path) in refused.value.message and "HARDAL_STORE" in refused.value.message
    assert DayStore.open(make_settings(store=str(path))) is None  # a server built without the CLI's check
    assert any(str(path) in m and "not a hardal-mcp day store" in m for m in warnings_of(caplog))
    assert files_beside(path) == before  # byte for byte, and no journal files beside it


def test_a_damaged_store_of_ours_is_moved_aside_not_deleted(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(path)
    raw = bytearray(path.read_bytes())
    raw[16384:] = os.urandom(len(raw) - 16384)  # every page but the header's
    path.write_bytes(bytes(raw))
    with DayStore(path, clock=Clock()) as day_store:
        assert day_store.get(key()) is None
        (aside,) = path.parent.glob(f"{FILENAME}.corrupt-*")
        assert aside.read_bytes() == bytes(raw)
        assert aside.name == f"{FILENAME}.corrupt-20261120T000000Z"  # the store's clock, in UTC
        assert day_store.put(key(), frame(sessions(3)), 3)
        assert_exact(day_store.get(key()), sessions(3))
    (message,) = warnings_of(caplog)
    assert "damaged" in message and f"moved aside to {aside}" in message


def test_a_truncated_file_serves_nothing_wrong(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(path)
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)
    with DayStore(path, clock=Clock()) as day_store:
        for i in range(5):
            got = day_store.get(key(DAY + timedelta(days=i)))
            assert got is None or to_sessions(got) == sessions(200, f"d{i}")  # whatever survived is exact, or nothing
        day_store.put(key(), frame(sessions(3)), 3)
        assert_exact(day_store.get(key()), sessions(3))
    assert warnings_of(caplog), "the damage is said"


def test_a_flipped_byte_in_a_body_is_caught_by_its_checksum(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        third = (DAY + timedelta(days=2)).isoformat()
        (body,) = conn.execute("SELECT body FROM days WHERE day = ?", (third,)).fetchone()
    raw = bytearray(path.read_bytes())
    # inside the body of the third day: a run of its bytes found nowhere else in the file
    at = next(raw.index(body[i : i + 32]) for i in range(0, len(body) - 32, 32) if raw.count(body[i : i + 32]) == 1)
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with DayStore(path, clock=Clock()) as day_store:
        assert day_store.get(key(DAY + timedelta(days=2))) is None
        assert day_store.status().days == 4  # that day is dropped, to be fetched again
        for i in (0, 1, 3, 4):
            assert_exact(day_store.get(key(DAY + timedelta(days=i))), sessions(200, f"d{i}"))
    (message,) = warnings_of(caplog)
    assert "checksum" in message


@pytest.mark.parametrize("column", ["fingerprint = 'ffffffffffff'", "total = 199"])
def test_a_body_under_another_key_or_total_fails_its_checksum(
    path: Path, column: str, caplog: pytest.LogCaptureFixture
) -> None:
    fill(path, days=1)
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE days SET {column}")
    with DayStore(path, clock=Clock()) as day_store:
        assert day_store.get(key(fingerprint="ffffffffffff")) is None
        assert day_store.get(key()) is None
    assert any("checksum" in m for m in warnings_of(caplog))


def test_trouble_is_logged_once_per_kind(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE days SET checksum = zeroblob(32)")
    with DayStore(path, clock=Clock()) as day_store:
        assert all(day_store.get(key(DAY + timedelta(days=i))) is None for i in range(5))
    assert len(warnings_of(caplog)) == 1


VERSION_1 = """
CREATE TABLE days (
    fingerprint TEXT NOT NULL, website_id TEXT NOT NULL, target TEXT NOT NULL, hybrid INTEGER NOT NULL,
    timezone TEXT NOT NULL, day TEXT NOT NULL, sessions INTEGER NOT NULL, format INTEGER NOT NULL,
    size INTEGER NOT NULL, stored REAL NOT NULL, used REAL NOT NULL, checksum BLOB NOT NULL, body BLOB NOT NULL,
    UNIQUE (fingerprint, website_id, target, hybrid, timezone, day)
);
"""


def test_a_store_of_the_older_version_is_emptied(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Version 1 wrote days emptied by a bug: none of them may be served."""
    path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(VERSION_1 + f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;")
        body = encode(frame([]))
        conn.execute(
            "INSERT INTO days VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key().columns(), 0, 1, len(body), LATER, LATER, b"\0" * 32, body),
        )
        conn.commit()
    inode = path.stat().st_ino
    with DayStore(path, clock=Clock()) as day_store:
        assert day_store.status().days == 0
        assert day_store.get(key()) is None
        assert day_store.put(key(), frame(sessions(3)), 3)
        assert_exact(day_store.get(key()), sessions(3))
    assert path.stat().st_ino == inode  # ours: emptied in place
    (message,) = warnings_of(caplog)
    assert "older hardal-mcp (schema version 1)" in message and "dropped" in message
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_store_of_a_newer_version_is_left_alone(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(path, days=2)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = files_beside(path)
    with pytest.raises(StoreTooNew, match="newer hardal-mcp"):
        DayStore(path, clock=Clock())
    assert DayStore.open(make_settings(store=str(path))) is None
    (message,) = warnings_of(caplog)
    assert "newer hardal-mcp" in message and "fetched every time" in message
    for action in ("status", "clear"):
        done = cli("store", action, store=str(path))
        assert done.returncode != 0 and "newer hardal-mcp" in done.stderr, done
        assert "Traceback" not in done.stderr
    assert files_beside(path) == before


def test_a_file_replaced_under_an_open_store_is_followed(path: Path) -> None:
    with DayStore(path, clock=Clock()) as first, DayStore(path, clock=Clock()) as second:
        first.put(key(), frame(sessions(3)), 3)
        assert second.clear() == 1
        for suffix in ("", "-wal", "-shm"):  # what another process's move aside does
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        second.put(key(DAY + timedelta(days=1)), frame(sessions(2)), 2)
        assert_exact(first.get(key(DAY + timedelta(days=1))), sessions(2))


def test_a_file_replaced_by_one_not_ours_is_not_touched(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with DayStore(path, clock=Clock()) as day_store:
        day_store.put(key(), frame(sessions(3)), 3)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_text("notes\n")
        assert day_store.get(key()) is None
        assert day_store.put(key(), frame(sessions(3)), 3) is False
    assert files_beside(path) == {FILENAME: b"notes\n"}
    (message,) = warnings_of(caplog)
    assert "not a hardal-mcp day store" in message


# ------------------------------------------------------------------------------------ directories


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_directories_made_for_the_store_are_private_whatever_the_umask(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    umask = os.umask(0)
    try:
        with DayStore(home / ".cache" / "hardal-mcp" / FILENAME, clock=Clock()) as day_store:
            day_store.put(key(), frame(sessions(3)), 3)
    finally:
        os.umask(umask)
    assert mode_of(home / ".cache") == mode_of(home / ".cache" / "hardal-mcp") == 0o700
    assert mode_of(home) == 0o755  # it was there before: not ours to change
    for file in (home / ".cache" / "hardal-mcp").iterdir():
        assert mode_of(file) == 0o600, file.name
    assert not warnings_of(caplog)


@pytest.mark.parametrize("first", ["secret", "budget"])
def test_the_secret_and_the_budget_make_the_stores_directories_private_too(tmp_path: Path, first: str) -> None:
    """Whichever file a fresh installation writes first, its directories are 0700 whatever the umask."""
    from hardal_mcp.budget import shared_limiter

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    settings = make_settings(store=str(home / ".cache" / "hardal-mcp" / FILENAME))
    umask = os.umask(0)
    try:
        if first == "secret":
            Fingerprints.for_settings(settings)
        else:
            assert shared_limiter(settings, "ab" * 32) is not None
    finally:
        os.umask(umask)
    assert mode_of(home / ".cache") == mode_of(home / ".cache" / "hardal-mcp") == 0o700
    assert mode_of(home) == 0o755


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o722], ids=oct)
def test_a_store_directory_others_may_write_to_is_warned_about_once(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    with DayStore(shared / FILENAME, clock=Clock()) as day_store:
        day_store.put(key(), frame(sessions(3)), 3)
        Path(f"{day_store.path}").unlink()  # reconnecting checks the directory again
        day_store.put(key(), frame(sessions(3)), 3)
    assert mode_of(shared) == mode  # said, not changed
    (message,) = warnings_of(caplog)
    assert str(shared) in message and "writable by other users" in message


# ----------------------------------------------------------------------------------- threads, processes


def test_threads_share_one_store(day_store: DayStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                k = key(DAY + timedelta(days=(t * 10 + i) % 15))
                day_store.put(k, frame(sessions(40, f"{k.day}")), 40)
                got = day_store.get(k)
                assert got is not None and to_sessions(got) == sessions(40, f"{k.day}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert day_store.status().days == 15


WRITER = """
import sys
from datetime import date, timedelta
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from tests.test_store import key, sessions, Clock, frame, to_sessions
from hardal_mcp.store import DayStore
path, first = Path(sys.argv[1]), int(sys.argv[2])
with DayStore(path, clock=Clock()) as day_store:
    for i in range(first, first + 30):
        k = key(date(2026, 9, 1) + timedelta(days=i % 40))
        day_store.put(k, frame(sessions(300, k.day.isoformat())), 300)
        got = day_store.get(k)
        assert got is not None and to_sessions(got) == sessions(300, k.day.isoformat()), "read back"
print("ok")
"""


def test_two_processes_write_one_file_at_once(path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(first), str(ROOT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first in (0, 20)  # days 20-29 are written by both
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
        assert "damaged" not in err and "failed" not in err, err
    with DayStore(path, clock=Clock()) as day_store:
        assert day_store.status().days == 40
        for i in range(40):
            d = date(2026, 9, 1) + timedelta(days=i)
            assert_exact(day_store.get(key(d)), sessions(300, d.isoformat()))


# --------------------------------------------------------------------------------- where, settings, CLI


def test_store_path_follows_hardal_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store_path("off") is None
    assert store_path("auto", {}, "linux") == tmp_path / "home" / ".cache" / "hardal-mcp" / FILENAME
    assert store_path("auto", {"XDG_CACHE_HOME": "/xdg"}, "linux") == Path("/xdg/hardal-mcp") / FILENAME
    assert store_path("auto", {"XDG_CACHE_HOME": "relative"}, "linux") == default_path({}, "linux")
    assert store_path("auto", {}, "darwin") == tmp_path / "home" / "Library" / "Caches" / "hardal-mcp" / FILENAME
    windows = store_path("auto", {"LOCALAPPDATA": str(tmp_path / "local")}, "win32")
    assert windows == tmp_path / "local" / "hardal-mcp" / "Cache" / FILENAME
    assert store_path(str(tmp_path / "x.db")) == tmp_path / "x.db"
    assert store_path(str(tmp_path)) == tmp_path / FILENAME  # an existing directory
    assert store_path(f"{tmp_path}/new/") == tmp_path / "new" / FILENAME
    assert store_path("~/s.db") == tmp_path / "home" / "s.db"


def test_settings_read_hardal_store() -> None:
    assert Settings.from_env({}).store == "auto"
    assert Settings.from_env({"HARDAL_STORE": " OFF "}).store == "off"
    assert Settings.from_env({"HARDAL_STORE": "/data/x.db"}).store == "/data/x.db"
    assert Settings.from_env({"HARDAL_STORE_MAX_MB": "64"}).store_max_mb == 64
    assert Settings.from_env({}).store_max_mb == 512
    assert make_settings().store == "off"  # tests never touch the real cache unless they ask


def test_open_follows_the_settings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert DayStore.open(make_settings(store="off")) is None
    assert DayStore.open(make_settings(store=str(tmp_path), redact_pii=False)) is None  # redacted sessions only
    assert not list(tmp_path.iterdir())
    opened = DayStore.open(make_settings(store=str(tmp_path), store_max_mb=3))
    assert opened is not None
    with opened:
        assert opened.path == tmp_path / FILENAME
        assert opened.max_bytes == 3 * 2**20
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert DayStore.open(make_settings(store=str(blocker / "sub" / "s.db"))) is None  # a directory under a file
    assert any("unavailable" in m for m in warnings_of(caplog))


def cli(*args: str, store: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    return subprocess.run(
        [sys.executable, "-m", "hardal_mcp", *args],
        cwd=ROOT,
        env={**base, "HARDAL_STORE": store, **env},
        stdin=subprocess.DEVNULL,  # a server that starts reads EOF and stops
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_status_and_clear(tmp_path: Path) -> None:
    secret = "hk_live_CLI_SECRET_999"
    path = tmp_path / FILENAME
    fingerprint = Fingerprints.ephemeral().of(SecretStr(secret))
    with DayStore(path, clock=Clock()) as day_store:
        for i in range(3):
            day_store.put(key(DAY + timedelta(days=i), fingerprint=fingerprint), frame(sessions(5)), 5)
        day_store.put(key(DAY, website_id="shop"), frame(sessions(5)), 5)
    done = cli("store", "status", store=str(tmp_path), HARDAL_API_KEY=secret)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert str(path) in out
    assert "days         4" in out
    assert "websites     2" in out
    assert "oldest day   2026-10-01" in out and "newest day   2026-10-03" in out
    assert f"key {fingerprint[:12]}  website" in out  # a short prefix only, however long fingerprints are
    assert secret not in out + done.stderr
    done = cli("store", "clear", store=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "4 days removed" in done.stdout
    assert "days         0" in cli("store", "status", store=str(tmp_path)).stdout


def test_cli_status_and_clear_work_with_redaction_off_and_say_the_server_does_not_use_the_store(
    tmp_path: Path,
) -> None:
    fill(tmp_path / FILENAME, days=2)
    done = cli("store", "status", store=str(tmp_path), HARDAL_REDACT_PII="false")
    assert done.returncode == 0, done.stderr
    assert "days         2" in done.stdout and "does not use the day store while redaction is off" in done.stdout
    done = cli("store", "clear", store=str(tmp_path), HARDAL_REDACT_PII="false")
    assert done.returncode == 0, done.stderr
    assert "2 days removed" in done.stdout


FULL_DISK = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails (EFBIG) instead of killing us
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
runpy.run_module("hardal_mcp", run_name="__main__", alter_sys=True)
"""


def test_cli_clear_on_a_full_disk_says_so_and_keeps_the_days(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write beyond 32 KiB fail as a full disk would (root ignores file modes)."""
    path = tmp_path / FILENAME
    fill(path, days=5)
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARDAL_")}
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(32 * 1024), "store", "clear"],
        cwd=ROOT,
        env={**base, "HARDAL_STORE": str(path)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "days removed" not in done.stdout
    assert f"hardal-mcp: Day store {path}" in done.stderr and "failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with DayStore(path, clock=Clock()) as day_store:
        assert day_store.status().days == 5


def test_the_server_and_the_store_commands_refuse_a_file_not_ours(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("call the bank on monday\n")
    runs = {
        "server": cli(store=str(notes)),
        "call": cli("call", "summarize_sessions", "--demo", store=str(notes)),
        "status": cli("store", "status", store=str(notes)),
        "clear": cli("store", "clear", store=str(notes)),
    }
    for name, done in runs.items():
        assert done.returncode == 2, (name, done.stderr)
        assert f"hardal-mcp: HARDAL_STORE names {notes}: a file that is not a SQLite database" in done.stderr, name
        assert "HARDAL_STORE=off" in done.stderr and "Traceback" not in done.stderr, name
    assert files_beside(notes) == {"notes.txt": b"call the bank on monday\n"}


def test_cli_status_creates_nothing_and_says_when_off(tmp_path: Path) -> None:
    done = cli("store", "status", store=str(tmp_path / "none") + "/")
    assert done.returncode == 0 and "nothing stored yet" in done.stdout
    assert not (tmp_path / "none").exists()
    assert "off" in cli("store", "status", store="off").stdout


def test_status_counts_days_websites_and_span(day_store: DayStore) -> None:
    empty = day_store.status()
    assert (empty.days, empty.websites, empty.oldest, empty.newest, empty.sites) == (0, 0, None, None, ())
    day_store.put(key(DAY), frame(sessions(2)), 2)
    day_store.put(key(DAY + timedelta(days=5)), frame(sessions(2)), 2)
    day_store.put(key(DAY - timedelta(days=3), website_id="b", fingerprint="bbbbbbbbbbbb"), frame(sessions(2)), 2)
    status = day_store.status()
    assert (status.days, status.websites) == (3, 2)
    assert (status.oldest, status.newest) == (DAY - timedelta(days=3), DAY + timedelta(days=5))
    assert [(s.fingerprint, s.website_id, s.days) for s in status.sites] == [(FP, "site", 2), ("bbbbbbbbbbbb", "b", 1)]
    assert status.bytes > 0
