"""Personal data masked at the door (HARDAL_REDACT_PII, on by default): every session and event is
redacted as it is read, before any aggregation (and so before the day store keeps it), so digests, tables
and structured content all carry `[email]`, `[phone]`, `[ip]`, `[ssn]`, `token=[redacted]` and
`session_id=[redacted]` instead, in ids too, whether the value spelled them plainly or URL-encoded; nothing
else in a value changes (cleaning is for display), so analyses work on exact values. Values repeat heavily (paths,
UTM values, countries), so each distinct string is redacted once."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .frames import map_text
from .models import ActivityEvent, Session
from .sanitize import _INVISIBLE, _SPACES, Sanitizer

if TYPE_CHECKING:
    import polars as pl

_WHOLE = 1 << 20  # redaction must not shorten values; the renderers cut them later, visibly
_SANITIZER = Sanitizer(redact_pii=True)


@lru_cache(maxsize=1 << 16)
def redact(value: str) -> str:
    """`value` with personal data masked, and otherwise exactly as it was: analyses match and group on it,
    and a zero-width or spacing variant of a page is another page. A value with something masked comes
    back as one cleaned line (the masks read the cleaned text, so no invisible character can hide an
    address from them). Segments pass their own values through this too, to match the masked data."""
    masked = _SANITIZER(value, _WHOLE)
    if masked == value or masked == _SPACES.sub(" ", _INVISIBLE.sub("", value)).strip():
        return value  # nothing masked: only cleaning changed it, and cleaning is for display
    return masked


def _opt(value: str | None) -> str | None:
    return None if value is None else redact(value)


# Ids are unique, so caching them is useless, and most hold digits that wake the IPv4 and phone patterns.
# Every masked pattern needs one of `= @ % : . + ( -` or a space: an id made only of letters, digits and
# `_` cannot hold personal data and is kept as it is.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_]{1,128}")


def _redact_id(value: str) -> str:
    return value if _PLAIN_ID.fullmatch(value) else redact(value)


def redact_session(s: Session) -> Session:
    """Mask in place (the object was just parsed and is not shared) and return it."""
    s.id = _redact_id(s.id)
    s.visitor_id = None if s.visitor_id is None else _redact_id(s.visitor_id)
    s.pages = list(map(redact, s.pages))
    s.browser, s.os, s.device, s.country = _opt(s.browser), _opt(s.os), _opt(s.device), _opt(s.country)
    if s.fields:
        s.fields = dict(zip(map(redact, s.fields), map(redact, s.fields.values()), strict=True))
    return s


def redact_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Sessions as columns, masked as `redact_session` masks one (each distinct value once)."""
    return map_text(frame, redact, plain_ids=f"^(?:{_PLAIN_ID.pattern})$")


def _redact_nested(value: Any) -> Any:
    """An undocumented value of any JSON shape, every string in it (keys too) redacted, its shape kept."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redact_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_nested(v) for v in value]
    return value


def redact_event(e: ActivityEvent) -> ActivityEvent:
    e.id, e.type, e.name, e.url = _opt(e.id), _opt(e.type), _opt(e.name), _opt(e.url)
    if e.properties:
        e.properties = {redact(k): redact(v) for k, v in e.properties.items()}
    if e.model_extra:  # undocumented keys are shown as properties: their names and nested values too
        extra = _redact_nested(e.model_extra)
        e.model_extra.clear()
        e.model_extra.update(extra)
    return e
