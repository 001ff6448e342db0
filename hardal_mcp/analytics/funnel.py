"""Funnels: how far sessions get through an ordered list of pages."""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from pydantic import Field

from ..errors import InputError
from ..numbers import rounded, rounded_int
from ..params import Window
from ..results import WindowInfo
from ..sanitize import clean, elide
from .estimate import Estimator, Getter, Record, counter, round_moe, sample_info, sample_note, scalar
from .scan import Scan
from .schema import (
    _VALUE_CHARS,
    DIMENSIONS,
    OTHER,
    Coverage,
    Schema,
    _check_top,
    _field_name,
    _grouped,
    _label,
    _spelled,
    identity,
    labels,
    pct,
)
from .segment import Segment, _check_patterns, _Glob, value_expr

if TYPE_CHECKING:
    import polars as pl

# ---------------------------------------------------------------------------------------------------
# Funnels


MAX_STEPS = 10
EXAMPLES = 3


class FunnelStep(Schema):
    page: str = Field(description="Step pattern")
    sessions: int = Field(description="Sessions reaching it, in order")
    from_prev_pct: float | None = None
    from_start_pct: float = Field(description="Of sessions reaching step 1, %")
    moe: float | None = Field(default=None, description="Estimated: ± pts of from_start_pct, 95%")
    prev_moe: float | None = Field(default=None, description="Estimated: ± pts of from_prev_pct, 95%")


class FunnelGroup(Schema):
    v: str
    sessions: int
    steps: list[int] = Field(description="Sessions reaching each step")
    conversion_pct: float = Field(description="Last step / step 1, %")
    moe: float | None = Field(default=None, description="Estimated: ± pts of conversion_pct, 95%")


class FunnelResult(Schema):
    website_id: str
    window: WindowInfo
    segment: str | None = None
    coverage: Coverage
    sessions: int = Field(description="Sessions considered")
    steps: list[FunnelStep]
    worst_step: int | None = Field(description="Step (1-based) losing the largest share of the step before")
    dropped: list[str] = Field(description="Sessions that reached the step before worst_step but not it")
    breakdown: str | None = None
    groups: list[FunnelGroup] = Field(description="Top groups by sessions reaching step 1, then (other)")


def _page_matcher(pattern: str) -> Callable[[str], bool]:
    return _Glob(pattern) if "*" in pattern else pattern.__eq__


def _keep_smallest(ids: list[str], sid: str) -> None:
    """A few example ids, the smallest seen: the same whatever order sessions arrive in."""
    if len(ids) < EXAMPLES or sid < ids[-1]:
        insort(ids, sid)
        del ids[EXAMPLES:]


class Funnel(Scan):
    """How many sessions visit `steps` in order (other pages in between allowed), streamed.

    A session reaches step k when steps 1..k match pages of its path in that order; matching each step at
    its earliest possible page is exact for such subsequence tests. One page satisfies one step."""

    def __init__(
        self,
        window: Window,
        steps: Sequence[str],
        *,
        breakdown: str | None = None,
        top: int = 5,
        segment: Segment | None = None,
    ) -> None:
        super().__init__(segment)
        if not 2 <= len(steps) <= MAX_STEPS:
            raise InputError("steps", f"give 2 to {MAX_STEPS} page patterns, in the order visitors take them.")
        try:
            for step in steps:
                _check_patterns(step)
        except ValueError as exc:
            raise InputError("steps", str(exc)) from None
        if breakdown is not None and not 0 < len(breakdown) <= 64:
            raise InputError("breakdown", "give country, device, browser, os or a field key such as utm_source.")
        self.window = window
        self.steps = list(steps)
        self.breakdown = breakdown
        self.top = _check_top(top)
        self._matchers = tuple(_page_matcher(p) for p in steps)
        self._reached = [0] * (len(steps) + 1)  # sessions by number of steps reached
        self._groups: dict[str | None, list[int]] = {}  # group value -> the same, per group
        self._dropped: list[list[str]] = [[] for _ in steps]  # [k]: reached k steps, missed step k+1

    def _consume(self, frame: pl.DataFrame) -> None:
        import polars as pl

        if not frame.height:
            return
        keys = [pl.col("pages")]
        if self.breakdown is not None:
            keys.append(value_expr(self.breakdown).alias("group"))
        distinct = frame.group_by(keys).agg(pl.len().alias("n"), pl.col("id").sort().head(EXAMPLES).alias("ids"))
        matchers, last = self._matchers, len(self._matchers)
        reached, groups = self._reached, self._groups
        for row in distinct.iter_rows(named=True):
            k = 0
            for page in row["pages"]:
                if matchers[k](page):
                    k += 1
                    if k == last:
                        break
            n = row["n"]
            reached[k] += n
            if self.breakdown is not None:
                g = row["group"]
                counts = groups.get(g)
                if counts is None:
                    counts = groups[g] = [0] * (last + 1)
                counts[k] += n
            if 0 < k < last:
                for sid in row["ids"]:
                    _keep_smallest(self._dropped[k], sid)

    def result(
        self, *, website_id: str, total: int | None, partial_reason: str | None = None, record: Record | None = None
    ) -> FunnelResult:
        self._close()
        reach = _cumulative(self._reached)
        if record is not None:
            record.scalars.update({f"reach.{i}": float(n) for i, n in enumerate(reach)})
        steps = [
            FunnelStep(
                page=elide(_label(pattern), _VALUE_CHARS),
                sessions=n,
                from_prev_pct=None if i == 0 else pct(n, reach[i]),
                from_start_pct=pct(n, reach[1]),
            )
            for i, (pattern, n) in enumerate(zip(self.steps, reach[1:], strict=True))
        ]
        worst = max(
            (i for i in range(2, len(reach)) if reach[i - 1]),
            key=lambda i: (1 - reach[i] / reach[i - 1], reach[i - 1] - reach[i], -i),
            default=None,
        )
        return FunnelResult(
            website_id=website_id,
            window=WindowInfo.of(self.window),
            segment=self.segment.describe() if self.segment else None,
            coverage=self.coverage(total, partial_reason),
            sessions=reach[0],
            steps=steps,
            worst_step=worst,
            dropped=[clean(sid, 128) for sid in self._dropped[worst - 1]] if worst else [],
            breakdown=_field_name(self.breakdown) if self.breakdown else None,
            groups=self._top_groups(record),
        )

    def record(self) -> Record:
        record = Record()
        self.result(website_id="", total=None, record=record)
        return record

    def _top_groups(self, record: Record | None) -> list[FunnelGroup]:
        """Groups of the exact breakdown value (case folded for the enumerations only); the rest as `(other)`."""
        if self.breakdown is None:
            return []
        fold = self.breakdown in DIMENSIONS
        groups, spelled = _grouped(
            ((raw, _cumulative(counts)) for raw, counts in self._groups.items()),
            lambda raw: identity(raw, fold=fold),
        )
        # `(other)`, the rest, is labelled with the groups: a value spelled so is told apart from it
        shown_as = labels([*groups, OTHER], lambda i: OTHER if i == OTHER else _label(spelled[i]), _spelled(spelled))
        ranked = sorted(groups.items(), key=lambda item: (-item[1][1], -item[1][0], shown_as[item[0]], item[0]))
        shown = ranked[: self.top]
        rest = [counts for _, counts in ranked[self.top :]]
        if rest:
            shown.append((OTHER, [sum(column) for column in zip(*rest, strict=True)]))
        if record is not None:
            recorded = {**groups, OTHER: shown[-1][1]} if rest else groups
            record.breakdown(_field_name(self.breakdown), recorded, 0, [i for i, _ in shown])
        return [
            FunnelGroup(v=shown_as[i], sessions=c[0], steps=c[1:], conversion_pct=pct(c[-1], c[1])) for i, c in shown
        ]


def _cumulative(by_steps_reached: Sequence[int]) -> list[int]:
    """[sessions, reaching step 1, …, reaching the last step] from sessions by number of steps reached."""
    out = [0] * len(by_steps_reached)
    running = 0
    for k in range(len(by_steps_reached) - 1, -1, -1):
        running += by_steps_reached[k]
        out[k] = running
    return out


def estimate_funnel(result: FunnelResult, est: Estimator) -> FunnelResult:
    """The funnel of a sampled read with counts scaled to the window (see `estimate`)."""
    reach = [est.value(scalar(f"reach.{i}")) for i in range(len(result.steps) + 1)]
    steps = []
    for i, step in enumerate(result.steps):
        now, first = scalar(f"reach.{i + 1}"), scalar("reach.1")
        # Step 1 is 100% of itself by definition: no interval around it.
        from_start, moe = est.proportion(now, first) if i else est.ratio(now, first, 100.0)
        from_prev, prev_moe = (None, None) if i == 0 else est.proportion(now, scalar(f"reach.{i}"))
        steps.append(
            step.model_copy(
                update={
                    "sessions": rounded_int(reach[i + 1]),
                    "from_prev_pct": None if from_prev is None else rounded(from_prev, 1),
                    "from_start_pct": rounded(from_start, 1),
                    "moe": round_moe(moe),
                    "prev_moe": round_moe(prev_moe),
                }
            )
        )
    groups = []
    key = result.breakdown or ""
    # The record holds the groups by identity, in the order shown; `(other)` is the rest of the master's
    # top groups, so on each page it is the page's sessions less theirs, not the page's own rest.
    texts = est.master.shown.get(key, [])
    top = [text for text in texts if text != OTHER]
    for group, text in zip(result.groups, texts, strict=True):
        column = _rest(key, top) if text == OTHER else partial(counter, key, text)
        counts = [est.value(column(j)) for j in range(len(result.steps) + 1)]
        conversion, moe = est.proportion(column(len(result.steps)), column(1))
        groups.append(
            group.model_copy(
                update={
                    "sessions": rounded_int(counts[0]),
                    "steps": [rounded_int(n) for n in counts[1:]],
                    "conversion_pct": rounded(conversion, 1),
                    "moe": round_moe(moe),
                }
            )
        )
    margins = [m for m in (*(s.moe for s in steps), *(g.moe for g in groups)) if m is not None]
    sample = sample_info(est, []).model_copy(update={"moe": max(margins, default=None)})
    coverage = result.coverage.model_copy(update={"sample": sample, "note": sample_note(sample, est.design.days)})
    return result.model_copy(
        update={"sessions": rounded_int(reach[0]), "steps": steps, "groups": groups, "coverage": coverage}
    )


def _rest(key: str, top: list[str]) -> Callable[[int], Getter]:
    """Count `j` of the sessions outside the groups `top`: all of them (`reach.j`) less the groups'."""

    def column(j: int) -> Getter:
        everyone = scalar(f"reach.{j}")
        return lambda rec: everyone(rec) - sum(rec.count(key, text, j) for text in top)

    return column
