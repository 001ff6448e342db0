"""Pure, streaming aggregation of the sessions of one window. No I/O.

Modules by concept: `schema` (result models and shared helpers), `segment` (which sessions count),
`scan` (the streaming base), `digest`, `funnel`, `paths`, and `compare` (two finished summaries).

A scan is fed pages of parsed sessions as they arrive and keeps counters, never the sessions (but see
`Scan` for a `returning` segment): per-session work is a few dict updates (≈3-4 µs for a digest), and
everything costly (sorting, folding, cleaning visitor-typed text) happens once at the end, over distinct
values rather than sessions. Digest, Funnel and PathAnalysis share that scan; `compare` works on two
finished summaries.

Definitions used throughout:
- a session's page views are `page_views`, or the length of `pages` when upstream omits the count;
- a bounce is a session with at most one page view (zero-page sessions are bounces too);
- a returning visitor has at least two sessions in the window;
- percentiles interpolate linearly between closest ranks (numpy's default), so the median of an even
  count is the mean of the two middle values.
"""

from .compare import RATES, Change, Comparison, compare
from .digest import Digest
from .funnel import Funnel, FunnelResult
from .paths import PathAnalysis, PathResult
from .scan import Scan
from .schema import (
    DIMENSIONS,
    NONE,
    PATH_HEAD,
    PATH_TAIL,
    UTM_KEYS,
    Breakdown,
    Coverage,
    Entry,
    Series,
    Summary,
    fmt_duration,
    path_text,
    pct,
    quantile,
)
from .segment import Segment

__all__ = [
    "DIMENSIONS",
    "NONE",
    "PATH_HEAD",
    "PATH_TAIL",
    "RATES",
    "UTM_KEYS",
    "Breakdown",
    "Change",
    "Comparison",
    "Coverage",
    "Digest",
    "Entry",
    "Funnel",
    "FunnelResult",
    "PathAnalysis",
    "PathResult",
    "Scan",
    "Segment",
    "Series",
    "Summary",
    "compare",
    "fmt_duration",
    "path_text",
    "pct",
    "quantile",
]
