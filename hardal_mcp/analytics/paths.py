"""Paths: where sessions go next from a page and come from before it."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..errors import InputError
from ..numbers import rounded, rounded_int
from ..params import Window
from ..results import WindowInfo
from ..sanitize import elide
from .estimate import Estimator, Record, estimate_breakdown, sample_info, sample_note, scalar
from .funnel import _page_matcher
from .scan import Scan
from .schema import (
    _STEP_CHARS,
    _VALUE_CHARS,
    ARROW,
    ENTERED,
    EXITED,
    NONE,
    Breakdown,
    Coverage,
    Schema,
    _breakdown,
    _check_top,
    _grouped,
    _label,
    identity,
    path_step,
    path_text,
    sequence_identity,
    sequence_plain,
)
from .segment import Segment, _check_patterns

if TYPE_CHECKING:
    import polars as pl

# ---------------------------------------------------------------------------------------------------
# Paths


class PathResult(Schema):
    website_id: str
    window: WindowInfo
    segment: str | None = None
    coverage: Coverage
    page: str | None = Field(description="Pattern studied; null: whole paths")
    sessions: int = Field(description="Sessions considered")
    visits: int | None = Field(default=None, description="Sessions viewing the page")
    views: int | None = Field(default=None, description="Times it was viewed; previous/next count these")
    previous: Breakdown | None = None
    next: Breakdown | None = None
    flows: Breakdown | None = Field(default=None, description="Landing → exit page")
    paths: Breakdown | None = Field(default=None, description="Whole paths, long ones elided in the middle")
    moe: dict[str, float] | None = Field(default=None, description="Estimated: 95% margins of the counts, by name")


class PathAnalysis(Scan):
    """With `page` (a pattern): where visitors come from and go to around each view of it, counting every
    view. Without: the most common landing → exit flows and whole paths. Streamed."""

    def __init__(
        self, window: Window, page: str | None = None, *, top: int = 10, segment: Segment | None = None
    ) -> None:
        super().__init__(segment)
        if page is not None:
            try:
                _check_patterns(page)
            except ValueError as exc:
                raise InputError("page", str(exc)) from None
        self.window = window
        self.page = page
        self.top = _check_top(top)
        self._is_page = _page_matcher(page) if page is not None else None
        self._viewers = 0  # sessions viewing the page
        self._views = 0
        # With a page: page before / after each view (None: entered / exited there). Without: the flow
        # (landing, exit) and the whole path of each session (None: no pages).
        self._before: dict[Any, int] = {}
        self._after: dict[Any, int] = {}

    def _consume(self, frame: pl.DataFrame) -> None:
        import polars as pl

        before, after, match = self._before, self._after, self._is_page
        for pages, n in frame.group_by("pages").agg(pl.len()).iter_rows():
            if match is None:
                key: Any = (pages[0], pages[-1]) if pages else None
                before[key] = before.get(key, 0) + n
                key = tuple(pages) or None
                after[key] = after.get(key, 0) + n
                continue
            last = len(pages) - 1
            seen = False
            for i, page in enumerate(pages):
                if match(page):
                    seen = True
                    self._views += n
                    key = pages[i - 1] if i else None
                    before[key] = before.get(key, 0) + n
                    key = pages[i + 1] if i < last else None
                    after[key] = after.get(key, 0) + n
            if seen:
                self._viewers += n

    def result(
        self, *, website_id: str, total: int | None, partial_reason: str | None = None, record: Record | None = None
    ) -> PathResult:
        self._close()
        by_page = self.page is not None
        before, after = self._before, self._after
        if record is not None:
            record.scalars.update(sessions=self.matched, visits=self._viewers, views=self._views)
        top = partial(self._top, record=record)
        return PathResult(
            website_id=website_id,
            window=WindowInfo.of(self.window),
            segment=self.segment.describe() if self.segment else None,
            coverage=self.coverage(total, partial_reason),
            sessions=self.matched,
            page=elide(_label(self.page), _VALUE_CHARS) if self.page is not None else None,
            visits=self._viewers if by_page else None,
            views=self._views if by_page else None,
            previous=top("previous", before, partial(identity, missing=ENTERED), _or(ENTERED), _shows)
            if by_page
            else None,
            next=top("next", after, partial(identity, missing=EXITED), _or(EXITED), _shows) if by_page else None,
            flows=None if by_page else top("flow", before, sequence_identity, _flow_label, sequence_plain),
            paths=None if by_page else top("path", after, sequence_identity, _whole_path_label, sequence_plain),
        )

    def record(self) -> Record:
        record = Record()
        self.result(website_id="", total=None, record=record)
        return record

    def _top(
        self,
        key: str,
        counts: dict[Any, int],
        ident: Callable[[Any], str],
        label: Callable[[Any], str],
        plain: Callable[[Any, str], bool],
        record: Record | None,
    ) -> Breakdown:
        """The top list of exact values (pages, or page sequences); only their labels are cleaned."""
        groups, spelled = _grouped(((raw, (n,)) for raw, n in counts.items()), ident)
        whole = self._views if self.page is not None else self.matched
        return _breakdown(
            key,
            groups,
            whole,
            self.top,
            record=record,
            text=lambda i: label(spelled[i]),
            plain=lambda i, text: plain(spelled[i], text),
        )


def _shows(page: str | None, text: str) -> bool:
    """Whether `text` shows `page` as it is."""
    return text == page


def _or(instead_of_none: str) -> Callable[[str | None], str]:
    return lambda page: instead_of_none if page is None else _label(page)


def _flow_label(key: tuple[str, str] | None) -> str:
    return NONE if key is None else ARROW.join(path_step(page, _STEP_CHARS) for page in key)


def _whole_path_label(key: tuple[str, ...] | None) -> str:
    return NONE if key is None else path_text(key, _STEP_CHARS)


def estimate_paths(result: PathResult, est: Estimator) -> PathResult:
    """The paths of a sampled read with counts and shares scaled to the window (see `estimate`)."""
    lists = {
        name: estimate_breakdown(b, est) if b is not None else None
        for name, b in (
            ("previous", result.previous),
            ("next", result.next),
            ("flows", result.flows),
            ("paths", result.paths),
        )
    }
    by_page = result.page is not None
    sample = sample_info(est, [b for b in lists.values() if b is not None])
    coverage = result.coverage.model_copy(update={"sample": sample, "note": sample_note(sample, est.design.days)})
    sessions = est.design.total if result.segment is None else rounded_int(est.value(scalar("sessions")))
    counts = (("visits", "views") if by_page else ()) + (("sessions",) if result.segment is not None else ())
    margins = {name: est.t * math.sqrt(var) for name in counts if (var := est.variance(scalar(name))) is not None}
    return result.model_copy(
        update={
            **lists,
            "sessions": sessions,
            "visits": rounded_int(est.value(scalar("visits"))) if by_page else None,
            "views": rounded_int(est.value(scalar("views"))) if by_page else None,
            "coverage": coverage,
            "moe": {name: rounded(m, 1) for name, m in margins.items()},
        }
    )
