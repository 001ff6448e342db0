"""Visitor-typed text (paths, UTM values, custom fields) and anything else upstream sends (keys, error
messages) is untrusted on its way into a model's context.

`clean` makes a value one visible line of bounded length: no control characters, terminal escapes,
invisible or bidi-reordering characters that could hide or disguise text, and no line breaks that could
fake structure. Credentials (`Authorization: …`, `Bearer <token>`, JWTs) are always masked; optional PII
redaction runs on the cleaned text too: e-mail addresses, phone numbers, IP addresses and US social security
numbers, the values of query parameters named like a secret or an id (`token=`, `ssn=`, `session_id=`), and
all of these spelled percent- or form-encoded (`%2B1+415+555+0199`). Both run before the length cap, so a
cut can never leave half an e-mail address or a token's prefix behind. `redact_secret` masks one known
secret (the API key). No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote_plus, unquote_plus

ELLIPSIS = "…"

# Deleted outright: terminal escapes first (so their parameters go too), then C0/C1 controls that are
# not whitespace, zero-width characters, bidi embeddings/overrides/isolates, Unicode tag characters
# (invisible "ASCII smuggling") and lone surrogates (they cannot be encoded for the transport).
_INVISIBLE = re.compile(
    "\x1b\\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    "|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?"  # OSC: titles, hyperlinks
    "|\x1b[@-_]?"  # other two-character escapes, or a stray ESC
    "|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    "|[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
    "\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\U000e0000-\U000e007f\ud800-\udfff]"
)
# Every Unicode whitespace, line and paragraph separators included: str.splitlines() breaks on several
# of them, so they all become one plain space.
_SPACES = re.compile(r"\s+")

_EMAIL = r"[\w.%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
# `+` separates too: a form sends a space as `+` (`?q=415+555+0199`).
_PHONE = r"(?:(?<![\w+])\+\d[\d ().+-]{6,}\d|(?<!\w)\(?\d{3}\)?[ .+-]\d{3}[ .+-]\d{4})(?!\w)"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not part of a longer dotted number (1.10.1.2.3, a version) nor glued to a letter or digit (v10.1.2.3),
# but after a separator (`v.10.1.2.3`, `ip_10.1.2.3`) and before a full stop that ends a sentence.
_IPV4 = rf"(?<![^\W_])(?<!\d\.){_OCTET}(?:\.{_OCTET}){{3}}(?![^\W_])(?!\.\d)"
# Full eight-group form, or a compressed form with `::`; a clock time such as 14:03:22 is neither. Not
# inside a longer run of groups, but after a colon that follows no group (`v:2001:db8::1`).
_HEX = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(?<!\w)(?<![0-9a-f]:)(?:(?:{_HEX}:){{7}}{_HEX}|(?:{_HEX}:){{0,6}}{_HEX}::(?:{_HEX}(?::{_HEX}){{0,6}})?"
    rf"|::{_HEX}(?::{_HEX}){{0,6}})(?![\w:])"
)
_SSN = r"(?<!\w)(?<!\d-)\d{3}-\d{2}-\d{4}(?!\w)(?!-\d)"  # not part of a longer dashed number
# A query or form parameter whose name ends in a secret-looking word or in `_id` keeps its name, loses its
# value (`session_id=`, `user_id=`: an id ties the visit to a person).
_PARAM = r"(?<![^?&;#\s])([\w.-]+=)[^&#\s]+"
_SECRET_NAMES = (
    "token", "key", "password", "passwd", "pwd", "secret", "auth", "authorization", "session", "sessionid", "sid",
    "sig", "signature", "code", "ssn", "_id", "-id",
)  # fmt: skip
# A path segment, parameter name or value with percent escapes (`%2B1+415+555+0199`) is read decoded too,
# as a form sends it (`+` for a space).
_ENCODED = re.compile(r"[^\s?&#=/;]*%[0-9a-f]{2}[^\s?&#=/;]*", re.IGNORECASE)
_ESCAPE = re.compile(r"%[0-9a-f]{2}", re.IGNORECASE)


# Credentials, masked whatever HARDAL_REDACT_PII says: a header value after `Authorization`, a bearer
# token (long, or holding a digit, so that "Bearer bonds" stays) and a JWT (raw in Nexus-style headers).
# A value already masked (`[key]`, `[credential]`) is left as it is.
CREDENTIAL = "[credential]"
_CRED_CHAR = r"[\w.~+/-]"
_CREDENTIALS = re.compile(
    r"(?i)((?<![a-z])(?:proxy-)?authori[sz]ation[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest)\s+)?+)(?!\[)[^\s\"',;&]+"
    rf"|(\bbearer\s+)(?:(?={_CRED_CHAR}*\d){_CRED_CHAR}{{8,}}|{_CRED_CHAR}{{16,}})=*"
    r"|\beyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]*"
)


def _may_hold_credential(value: str) -> bool:
    """A cheap gate (a few times faster than a case-insensitive regex search) before the patterns."""
    lower = value.lower()
    return "bearer" in lower or "authori" in lower or "eyJ" in value


def _mask_credential(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2) or "") + CREDENTIAL


def mask_credentials(value: str) -> str:
    """`value` with anything shaped like a credential replaced by `[credential]`."""
    return _CREDENTIALS.sub(_mask_credential, value) if _may_hold_credential(value) else value


def redact_secret(value: str, secret: str | None, mask: str = "[key]") -> str:
    """`value` with every occurrence of `secret` (e.g. the API key) replaced; do it before any cut."""
    return value.replace(secret, mask) if secret and secret in value else value


def _mask_secret(match: re.Match[str]) -> str:
    name = match.group(1)
    return f"{name}[redacted]" if name[:-1].lower().endswith(_SECRET_NAMES) else match.group(0)


# (gate, pattern, mask) in order: a secret value may hold an e-mail address, an e-mail domain may hold
# digits. The gate is a cheap search that skips a pattern which cannot match.
_PII: tuple[tuple[re.Pattern[str], re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(gate), re.compile(pattern, re.IGNORECASE), mask)
    for gate, pattern, mask in (
        ("=", _PARAM, _mask_secret),
        ("@|%40", _EMAIL, "[email]"),
        (":", _IPV6, "[ip]"),
        (r"\d", _IPV4, "[ip]"),
        (r"\d-\d", _SSN, "[ssn]"),
        (r"\d", _PHONE, "[phone]"),
    )
)


def _mask_plain(value: str) -> str:
    for gate, pattern, mask in _PII:
        if gate.search(value):
            value = pattern.sub(mask, value)
    return value


def _mask_encoded(match: re.Match[str]) -> str:
    """An encoded piece with what its decoded text holds masked, encoded again (what it spelled as itself,
    such as `:`, stays so); as it was if it holds nothing to mask."""
    piece = match.group(0)
    decoded = unquote_plus(piece)
    masked = _mask_plain(decoded)
    if masked == decoded:
        return piece
    literal = set(_ESCAPE.sub("", piece)) - {"%", "+"}
    return quote_plus(masked, safe="[]" + "".join(literal))


def _mask_pii(value: str) -> str:
    """Encoded pieces first: read plainly, a part of one (`%2B1-415-555-0199`) could be masked alone."""
    if "%" in value:
        value = _ENCODED.sub(_mask_encoded, value)
    return _mask_plain(value)


def elide(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters in the middle, keeping more of the start than the end."""
    if len(text) <= limit:
        return text
    if limit < 2:
        return ELLIPSIS[:limit]
    tail = (limit - 1) // 3
    return text[: limit - 1 - tail] + ELLIPSIS + (text[-tail:] if tail else "")


class Sanitizer:
    """`clean` with its options fixed; the compiled patterns are module-level and shared."""

    __slots__ = ("redact_pii",)

    def __init__(self, *, redact_pii: bool = False) -> None:
        self.redact_pii = redact_pii

    def __call__(self, value: str, limit: int = 120) -> str:
        # Fast path: most values (device names, short paths) are already one plain printable ASCII line.
        if not (value.isascii() and value.isprintable() and "  " not in value and value.strip(" ") == value):
            value = _SPACES.sub(" ", _INVISIBLE.sub("", value)).strip()
        if _may_hold_credential(value):
            value = _CREDENTIALS.sub(_mask_credential, value)
        if self.redact_pii:
            value = _mask_pii(value)
        return elide(value, limit)


_PLAIN = Sanitizer()


def clean(value: str, limit: int = 120) -> str:
    """One visible line of at most `limit` characters, credentials masked, without PII redaction."""
    return _PLAIN(value, limit)
