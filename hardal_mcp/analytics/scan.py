"""Scanning: what every streaming analysis shares: dedupe by session id, sessions per visitor, the segment."""

from __future__ import annotations

from collections.abc import Iterable

from ..models import Session
from .estimate import Record
from .schema import (
    Coverage,
)
from .segment import Segment

# ---------------------------------------------------------------------------------------------------
# Scanning.


class Scan:
    """What every streaming analysis shares: dedupe by session id, sessions per visitor, the segment.

    Subclasses implement `_consume(batch)` over the new, unique, matching sessions of one page, and call
    `_close()` before reading their results.

    `returning` is a property of the visitor over the whole window, known for sure only when the scan
    ends. A matching session whose visitor has been seen once so far is therefore held back: for
    `returning=True` it is released as soon as the visitor's second session arrives (matching or not),
    for `returning=False` it is released at the end unless one did. These are the only sessions a scan
    keeps, at most one per visitor (≈2 KB each); a segment without `returning` holds none."""

    def __init__(self, segment: Segment | None = None) -> None:
        self._seen: set[str] = set()
        self._visits: dict[str, int] = {}  # sessions per visitor id, over everything scanned
        self.duplicates = 0
        self.unreadable = 0  # items of pages that were not readable as sessions
        self.segment = segment
        self._match = segment.matcher() if segment else None
        self._returning = segment.returning if segment else None
        self._held: dict[str, Session] = {}  # visitor id -> a matching session awaiting `returning`
        self._closed = False
        self.matched = 0  # sessions handed to `_consume`

    @property
    def scanned(self) -> int:
        return len(self._seen)

    def add(self, sessions: Iterable[Session], unreadable: int = 0) -> None:
        """Take one page; `unreadable` counts the items of it that were not readable as sessions."""
        if self._closed:
            raise RuntimeError("this scan has been summarised; start a new one")
        self.unreadable += unreadable
        seen, visits, match, returning = self._seen, self._visits, self._match, self._returning
        batch: list[Session] = []
        for s in sessions:
            sid = s.id
            if sid in seen:
                self.duplicates += 1
                continue
            seen.add(sid)
            vid = s.visitor_id
            n = 0
            if vid is not None:
                n = visits.get(vid, 0) + 1
                visits[vid] = n
                if n == 2 and vid in self._held:  # the visitor turns out to be returning
                    first = self._held.pop(vid)
                    if returning:
                        batch.append(first)
            if match is None:
                batch.append(s)
            elif not match(s):
                continue
            elif returning is None:
                batch.append(s)
            elif n == 1:  # too early to tell
                self._held[vid] = s  # type: ignore[index]  # n == 1 implies a visitor id
            elif (n > 1) is returning:  # n == 0: no visitor id, so not returning
                batch.append(s)
        self._take(batch)

    def _close(self) -> None:
        """End of input: sessions still held belong to visitors seen once, who are not returning."""
        if not self._closed:
            self._closed = True
            held = list(self._held.values())
            self._held.clear()
            if self._returning is False:
                self._take(held)

    def _take(self, batch: list[Session]) -> None:
        self.matched += len(batch)
        self._consume(batch)

    def _consume(self, batch: list[Session]) -> None:
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
