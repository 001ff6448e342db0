"""Personal data masked at the door (HARDAL_REDACT_PII, on by default): every session and event is
redacted as it is read, before any aggregation, so digests, tables and structured content all carry
`[email]`, `[phone]`, `[ip]` and `token=[redacted]` instead, in ids too. Values repeat heavily (paths,
UTM values, countries), so each distinct string is redacted once."""

from __future__ import annotations

from functools import lru_cache

from .models import ActivityEvent, Session
from .sanitize import Sanitizer

_WHOLE = 1 << 20  # redaction must not shorten values; the renderers cut them later, visibly
_SANITIZER = Sanitizer(redact_pii=True)


@lru_cache(maxsize=1 << 16)
def redact(value: str) -> str:
    """`value` as one line with personal data masked."""
    return _SANITIZER(value, _WHOLE)


def _opt(value: str | None) -> str | None:
    return None if value is None else redact(value)


def redact_session(s: Session) -> Session:
    """Mask in place (the object was just parsed and is not shared) and return it."""
    s.id = redact(s.id)
    s.visitor_id = _opt(s.visitor_id)
    s.pages = [redact(p) for p in s.pages]
    s.browser, s.os, s.device, s.country = _opt(s.browser), _opt(s.os), _opt(s.device), _opt(s.country)
    if s.fields:
        s.fields = {redact(k): redact(v) for k, v in s.fields.items()}
    return s


def redact_event(e: ActivityEvent) -> ActivityEvent:
    e.id, e.type, e.name, e.url = _opt(e.id), _opt(e.type), _opt(e.name), _opt(e.url)
    if e.properties:
        e.properties = {redact(k): redact(v) for k, v in e.properties.items()}
    if e.model_extra:
        for key, value in e.model_extra.items():
            if isinstance(value, str):
                e.model_extra[key] = redact(value)
    return e
