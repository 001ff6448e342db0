"""Scanning: what every streaming analysis shares: dedupe by session id, sessions per visitor, the segment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..frames import from_sessions
from ..models import Session
from .estimate import Record
from .schema import (
    Coverage,
)
from .segment import Segment

if TYPE_CHECKING:
    import polars as pl

# ---------------------------------------------------------------------------------------------------
# Scanning.

BATCH = 50_000  # sessions counted in one go (tens of MB of columns at most)
_HASH_SEED = 0x4844  # any fixed seed: hashes are compared only within one scan


class Scan:
    """What every streaming analysis shares: dedupe by session id, sessions per visitor, the segment.

    A scan is fed frames of sessions (`frames`), a page or a stored day at a time. New sessions are
    gathered into batches of about BATCH rows: the engine's cost is mostly per call, so a hundred pages
    are counted at once rather than one by one. Subclasses implement `_consume(frame)` over the unique,
    matching sessions of one batch, computing grouped counts with the engine, and call `_close()` before
    reading their results.

    `returning` is a property of the visitor over the whole window, known for sure only when the scan
    ends: with it, matching sessions are held (as columns) until then. Without it a scan holds no
    sessions, only its counts and, as columns, the id and the visitor id of each session it has seen."""

    def __init__(self, segment: Segment | None = None) -> None:
        self._seen = 0  # unique sessions scanned
        self._ids: list[pl.Series] = []  # the id of every session scanned, per batch
        self._hashes: pl.Series | None = None  # and a 64-bit hash of each, to find repeats quickly
        self._visitors: list[pl.Series] = []  # the visitor id of every session scanned, per frame
        self.duplicates = 0
        self.unreadable = 0  # items of pages that were not readable as sessions
        self.segment = segment
        self._returning = segment.returning if segment else None
        self._pending: list[pl.DataFrame] = []  # new sessions not yet counted
        self._pending_rows = 0
        self._held: list[pl.DataFrame] = []  # matching sessions awaiting `returning`
        self._closed = False
        self.matched = 0  # sessions handed to `_consume`

    @property
    def scanned(self) -> int:
        """Unique sessions scanned so far (what is pending is deduplicated first)."""
        if not self._closed:
            self._flush()
        return self._seen

    def add(self, sessions: pl.DataFrame | Iterable[Session], unreadable: int = 0) -> None:
        """Take one frame of sessions (or `Session` objects); `unreadable` counts the items of its page
        that were not readable as sessions."""
        import polars as pl

        if self._closed:
            raise RuntimeError("this scan has been summarised; start a new one")
        frame = sessions if isinstance(sessions, pl.DataFrame) else from_sessions(list(sessions))
        self.unreadable += unreadable
        self._pending.append(frame)
        self._pending_rows += frame.height
        if self._pending_rows >= BATCH:
            self._flush()

    def _flush(self) -> None:
        """Count the pending sessions: the segment's filter, then `_consume` (or held for `returning`)."""
        import polars as pl

        if not self._pending:
            return
        frame = self._pending[0] if len(self._pending) == 1 else pl.concat(self._pending)
        self._pending, self._pending_rows = [], 0
        # Repeats (a page boundary moving while a window is read): the first of each is kept. Hashes find
        # the candidates; ids decide, so a hash collision costs time, never a session.
        hashes = frame.get_column("id").hash(_HASH_SEED)
        maybe = hashes.is_duplicated()
        if self._hashes is not None:
            maybe |= hashes.is_in(self._hashes.implode())
        if maybe.any():
            fresh = pl.col("id").is_first_distinct()
            if self._ids:
                fresh &= ~pl.col("id").is_in(pl.concat(self._ids).implode())
            kept = frame.with_columns(hashes.alias("_hash")).filter(fresh)
            self.duplicates += frame.height - kept.height
            frame, hashes = kept.drop("_hash"), kept.get_column("_hash")
        self._ids.append(frame.get_column("id"))
        self._hashes = hashes if self._hashes is None else pl.concat([self._hashes, hashes], rechunk=True)
        self._seen += frame.height
        self._visitors.append(frame.get_column("visitor_id"))
        if self.segment is not None:
            frame = self.segment.keep(frame)
        if self._returning is not None:
            self._held.append(frame)
        else:
            self._take(frame)

    def visits(self) -> pl.DataFrame:
        """(visitor_id, sessions) of every visitor scanned."""
        import polars as pl

        visitors = pl.concat(self._visitors) if self._visitors else pl.Series("visitor_id", [], pl.String)
        return visitors.drop_nulls().value_counts(name="sessions")

    def _close(self) -> None:
        """End of input: held sessions are released by what their visitors turned out to be."""
        import polars as pl

        if self._closed:
            return
        self._closed = True
        self._flush()
        if self._returning is not None and self._held:
            held = pl.concat(self._held)
            self._held.clear()
            again = self.visits().filter(pl.col("sessions") > 1).select("visitor_id")
            self._take(held.join(again, on="visitor_id", how="semi" if self._returning else "anti"))

    def _take(self, frame: pl.DataFrame) -> None:
        self.matched += frame.height
        self._consume(frame)

    def _consume(self, frame: pl.DataFrame) -> None:
        raise NotImplementedError

    def record(self) -> Record:
        """Every estimable count of what was added (see `estimate`); it ends the scan."""
        raise NotImplementedError

    def coverage(self, total: int | None, partial_reason: str | None) -> Coverage:
        scanned = self.scanned
        sent = scanned + self.unreadable
        of = f"{scanned:,} of {total:,}" if total is not None else f"the first {scanned:,} (total unknown)"
        if partial_reason:
            note: str | None = f"Covers {of} sessions: {partial_reason.rstrip('.')}."
        elif total is not None and sent < total:
            note = f"Covers {of} sessions: the window changed while it was read; ask again for exact figures."
        else:
            note = None
        if self.duplicates:
            dup = f"{self.duplicates:,} repeated session{'s' if self.duplicates > 1 else ''} skipped while paging."
            note = f"{note} {dup}" if note else dup
        if self.unreadable:
            n = self.unreadable
            bad = f"{n:,} item{'s' if n > 1 else ''} Hardal sent could not be read as sessions (no usable id)."
            note = f"{note} {bad}" if note else bad
        return Coverage(
            scanned=scanned,
            matched=None if self.segment is None else self.matched,
            duplicates=self.duplicates,
            unreadable=self.unreadable,
            total=total,
            complete=not partial_reason and (total is None or sent >= total),
            note=note,
        )
