"""How fast the day store (`hardal_mcp.store`) keeps and gives back a day of sessions, and what its body
format costs against the alternatives.

    python -m bench.store_speed [--sessions 15000] [--days 28] [--repeat 5]

Sessions come from the sandbox's generator (15,000 a day by default), rendered as the API's JSON, read by
`frames.parse_sessions_page` and redacted by `privacy.redact_frame`, as the client hands them over. Every
format is checked to round-trip the frame exactly before it is timed. Prints:

1. body formats: ms to encode and to decode one day, and bytes per session (the store writes Parquet with
   zstd level 1);
2. the checksum over one body (SHA-256, what the store uses, against blake2b and crc32);
3. the store itself (a SQLite file in a temporary directory): ms per day for `put`; then in a new process
   (a restart), the time to `get` all `--days` days back, per day and in total, and a warm `get`; bytes per
   session on disk and the file size for `--days` days.
Times are process CPU time (other work on the machine inflates wall time, not CPU time; Polars' threads
count too), the median of `--repeat` runs; the read-back also gives its wall time."""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from hardal_mcp import frames, store
from hardal_mcp.privacy import redact_frame
from hardal_mcp.sandbox.data import Site
from hardal_mcp.sandbox.query import Renderer, Window, resolve_window

TIMEZONE = "Europe/Istanbul"
FIRST_DAY = date(2026, 9, 1)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def day_of_sessions(day: date, count: int) -> pl.DataFrame:
    """`count` sessions of one day as the client hands them over (read from the API's JSON, redacted)."""
    zone = ZoneInfo(TIMEZONE)
    site = Site(0, "bench", count)
    start, end = resolve_window("custom", day.isoformat(), day.isoformat(), zone, NOW)
    window = Window(site, start, end, NOW)
    raw = window.page(0, window.total)
    while len(raw) < count:  # the generator varies around its average: top the day up with copies
        raw += [s._replace(id=f"{s.id}_{len(raw)}") for s in raw[: count - len(raw)]]
    body = Renderer(zone).sessions_body(raw[:count], {"total": count})
    return redact_frame(frames.parse_sessions_page(body.encode()).frame)


Codec = tuple[Callable[[pl.DataFrame], bytes], Callable[[bytes], pl.DataFrame]]


def parquet(compression: str, level: int | None = None) -> Codec:
    def encode(frame: pl.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression=compression, compression_level=level, statistics=False)  # type: ignore[arg-type]
        return buffer.getvalue()

    return encode, lambda body: pl.read_parquet(io.BytesIO(body))


def ipc(compression: str) -> Codec:
    def encode(frame: pl.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.write_ipc(buffer, compression=compression)  # type: ignore[arg-type]
        return buffer.getvalue()

    return encode, lambda body: pl.read_ipc(io.BytesIO(body))


FORMATS = {
    "parquet zstd 1 (store)": (frames.encode, frames.decode),
    "parquet zstd 3": parquet("zstd", 3),
    "parquet zstd 9": parquet("zstd", 9),
    "parquet lz4": parquet("lz4"),
    "parquet uncompressed": parquet("uncompressed"),
    "arrow ipc zstd": ipc("zstd"),
    "arrow ipc lz4": ipc("lz4"),
}


def median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        began = time.process_time()
        action()
        times.append((time.process_time() - began) * 1000)
    return statistics.median(times)


def store_keys(count: int) -> tuple[list[store.DayKey], Callable[[], float]]:
    """The keys of `count` days, and a clock well after them, so all are closed (nothing younger than 48 h
    is stored or served)."""
    clock = datetime.combine(FIRST_DAY + timedelta(days=count + 10), datetime.min.time(), UTC).timestamp
    return [
        store.DayKey("fp", "bench", None, False, TIMEZONE, FIRST_DAY + timedelta(days=i)) for i in range(count)
    ], clock


def read_back(path: Path, count: int, repeat: int) -> dict[str, float]:
    """In a fresh process (a restart): every day read, each let go before the next; then one day again."""
    keys, clock = store_keys(count)
    with store.DayStore(path, clock=clock) as day_store:
        began, wall = time.process_time(), time.perf_counter()
        for key in keys:
            day = day_store.get(key)
            assert day is not None
            del day
        cpu, elapsed = time.process_time() - began, time.perf_counter() - wall
        warm = median_ms(lambda: day_store.get(keys[0]), repeat)
    return {"cpu": cpu * 1000, "wall": elapsed * 1000, "warm": warm}


def through_store(days: list[pl.DataFrame], repeat: int) -> tuple[float, dict[str, float], int]:
    """Put every day into a new store, then time reading them back in a new process; check they round-trip."""
    keys, clock = store_keys(len(days))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / store.FILENAME
        with store.DayStore(path, clock=clock) as day_store:
            puts = []
            for key, sessions in zip(keys, days, strict=True):
                began = time.process_time()
                assert day_store.put(key, sessions, sessions.height)
                puts.append((time.process_time() - began) * 1000)
        size = path.stat().st_size  # closed: the journal is checkpointed into the file and removed
        child = subprocess.run(
            [sys.executable, "-m", "bench.store_speed", "--read-back", str(path), "--days", str(len(days)),
             "--repeat", str(repeat)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        reads = json.loads(child.stdout)
        with store.DayStore(path, clock=clock) as day_store:
            for key, sessions in zip(keys, days, strict=True):
                got = day_store.get(key)
                assert got is not None
                assert got.equals(sessions), "store round trip"
    return statistics.median(puts), reads, size


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=15_000, help="sessions per day")
    parser.add_argument("--days", type=int, default=28, help="days written and read back through the store")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--read-back", type=Path, help=argparse.SUPPRESS)  # the child that times a restart
    args = parser.parse_args()
    n, repeat = args.sessions, args.repeat
    if args.read_back:
        print(json.dumps(read_back(args.read_back, args.days, repeat)))
        return 0

    began = time.perf_counter()
    days = [day_of_sessions(FIRST_DAY + timedelta(days=i), n) for i in range(args.days)]
    print(f"{args.days} days × {n:,} sessions generated, parsed and redacted in {time.perf_counter() - began:.1f} s")
    sample = days[0]

    print(f"\n1. body formats, one day of {n:,} sessions (CPU ms, median of {repeat})")
    print(f"{'format':<24}{'encode ms':>11}{'decode ms':>11}{'bytes/session':>15}")
    for name, (enc, dec) in FORMATS.items():
        body = enc(sample)
        assert dec(body).equals(sample), f"{name} does not round-trip"
        print(
            f"{name:<24}{median_ms(lambda e=enc: e(sample), repeat):>11.1f}"  # type: ignore[misc]
            f"{median_ms(lambda d=dec, b=body: d(b), repeat):>11.1f}{len(body) / n:>15.1f}"  # type: ignore[misc]
        )

    body = frames.encode(sample)
    print(f"\n2. checksum of one {len(body) / 2**20:.2f} MiB body (CPU ms, median of {repeat})")
    for name, fn in (
        ("blake2b-128", lambda: hashlib.blake2b(body, digest_size=16).digest()),
        ("sha256 (store)", lambda: hashlib.sha256(body).digest()),
        ("crc32", lambda: zlib.crc32(body)),
    ):
        print(f"{name:<24}{median_ms(fn, repeat):>11.2f} ms")

    print(f"\n3. the store (SQLite, {args.days} days)")
    put, reads, size = through_store(days, repeat)
    count = sum(d.height for d in days)
    heads = ("put", "get", "N days", "(wall)", "warm get", "B/sess.", "MiB")
    print("".join(f"{h:>9}" for h in heads))
    figures = (put, reads["cpu"] / len(days), reads["cpu"], reads["wall"], reads["warm"])
    print("".join(f"{f:>9.1f}" for f in figures) + f"{size / count:>9.1f}{size / 2**20:>9.1f}")
    print(
        "CPU ms (wall: elapsed). put: encode, checksum and write one day, median over the days. Then, in a\n"
        "new process (a restart): get, N days: every day read back, each let go before the next (ms per day,\n"
        "total); warm get: one day again, median. B/sess. and MiB: the file on disk after the store is closed."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
