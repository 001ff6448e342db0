"""What hardal-mcp calls an API key instead of the key itself: its fingerprint.

A fingerprint is the HMAC-SHA256 of the key (surrounding whitespace stripped) under a secret of this
installation, in full (64 hex digits). It names the key wherever data is keyed by key: day-store rows, the
response cache, rate-budget files, rate limiters, background fills and MCP session ownership. Without the
secret nobody can compute a key's fingerprint, nor find two keys that share one, so no key can be made to
read what another key fetched. Only `display` (a short prefix) is ever printed.

The secret is 32 random bytes in `<store dir>/secret` (mode 0600, its directory 0700), shared by every
process that uses the same store, so they share stored days and budgets too. It is created atomically
(two processes racing end up with the same one) and refused unless it is a regular file of ours that
nobody else may read; then, and with HARDAL_STORE=off, a process draws a secret of its own: nothing on
disk is shared, which costs only cache hits.

With HARDAL_REDIS_URL the secret lives in Redis instead (`hardal:secret`, made by the first replica, its
expiry renewed by every replica), so that replicas on other machines name a key alike and share its budget."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from pydantic import SecretStr

from .config import Settings
from .files import private_directory
from .store import store_path

log = logging.getLogger(__name__)

SECRET_FILENAME = "secret"  # noqa: S105  # a file name, not a password
SECRET_BYTES = 32
DISPLAY_LENGTH = 12


class UnsafeSecret(Exception):
    """The secret file exists but is not one this process may trust."""


def presented(raw: str | None) -> SecretStr | None:
    """A key as a client presented it, without surrounding whitespace; None when blank."""
    key = (raw or "").strip()
    return SecretStr(key) if key else None


class Fingerprints:
    """Names keys by HMAC under one secret (see the module docstring)."""

    def __init__(self, secret: bytes, *, display_length: int = DISPLAY_LENGTH) -> None:
        self._secret = secret
        self.display_length = display_length

    @classmethod
    def ephemeral(cls) -> Fingerprints:
        """Fingerprints that only this process (this object) will ever compute."""
        return cls(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def for_settings(cls, settings: Settings) -> Fingerprints:
        """Under the secret in Redis when HARDAL_REDIS_URL is set (every replica names a key alike, so they
        share its budget); else beside HARDAL_STORE's store; a process's own when the store is off or the file
        cannot be used (said on stderr)."""
        if settings.redis_url is not None:
            from .budget_backends import needs_redis

            with needs_redis():
                from .budget_redis import shared_secret
            return cls(shared_secret(settings))
        path = store_path(settings.store)
        if path is None:
            return cls.ephemeral()
        try:
            return cls(load_secret(path.parent / SECRET_FILENAME))
        except (OSError, UnsafeSecret) as exc:
            log.warning(
                "Key secret at %s unusable (%s); this process names keys on its own, so it shares no stored "
                "days or rate budget with other processes.",
                path.parent / SECRET_FILENAME,
                exc,
            )
            return cls.ephemeral()

    def of(self, key: SecretStr) -> str:
        """The key's fingerprint: 64 hex digits."""
        material = key.get_secret_value().strip().encode()
        return hmac.new(self._secret, material, hashlib.sha256).hexdigest()

    def display(self, fingerprint: str) -> str:
        """How a fingerprint is shown in logs and status lines."""
        return fingerprint[: self.display_length]


def load_secret(path: Path) -> bytes:
    """The secret at `path`, created first if there is none. Raises UnsafeSecret or OSError."""
    private_directory(path.parent)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    # Written whole under a name of our own, then linked into place, which never replaces: of two
    # processes racing, the first link wins and both read what it linked.
    staging = path.with_name(f".{path.name}-{os.getpid()}-{secrets.token_hex(8)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(staging, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(SECRET_BYTES))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeSecret("not a regular file")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise UnsafeSecret("owned by another user")
        if info.st_mode & 0o077:
            raise UnsafeSecret(f"mode {stat.S_IMODE(info.st_mode):04o} opens it to other users; it must be 0600")
        secret = os.read(fd, SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(secret) != SECRET_BYTES:
        raise UnsafeSecret(f"{len(secret)} bytes instead of {SECRET_BYTES}")
    return secret
