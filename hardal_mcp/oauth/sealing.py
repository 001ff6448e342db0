"""What the state holds instead of secrets. A Hardal key is kept only encrypted (AES-256-GCM under a key
derived from HARDAL_OAUTH_SECRET, bound to the grant it belongs to, so a ciphertext moved to another grant does
not open); tokens, codes and consent requests are kept only as keyed hashes, so the state file (or Redis)
read by someone else yields nothing that can be presented. A key is also named by a keyed hash of its own
(`key_id`), so that every grant of a key Hardal refuses can be found and revoked."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

NONCE_BYTES = 12


class Sealing:
    """Encryption and hashing under one server secret."""

    def __init__(self, secret: SecretStr) -> None:
        material = secret.get_secret_value().encode()
        self._cipher = AESGCM(_derive(material, b"hardal-mcp oauth: key encryption"))
        self._hash_key = _derive(material, b"hardal-mcp oauth: token hashes")
        self._key_id_key = _derive(material, b"hardal-mcp oauth: key ids")

    def seal(self, key: SecretStr, grant_id: str) -> str:
        """The key, encrypted for the grant `grant_id` (hex: nonce then ciphertext and tag)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return (nonce + self._cipher.encrypt(nonce, key.get_secret_value().encode(), grant_id.encode())).hex()

    def unseal(self, sealed: str, grant_id: str) -> SecretStr | None:
        """The key back; None when it does not open (another secret, another grant, or tampered with)."""
        try:
            raw = bytes.fromhex(sealed)
            plain = self._cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], grant_id.encode())
        except (ValueError, InvalidTag):
            return None
        return SecretStr(plain.decode())

    def hash(self, kind: str, value: str) -> str:
        """How a token, code or request of `kind` is looked up: its keyed hash (64 hex digits)."""
        return hmac.new(self._hash_key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()

    def key_id(self, key: SecretStr) -> str:
        """A key's name in the state (never the key)."""
        return hmac.new(self._key_id_key, key.get_secret_value().strip().encode(), hashlib.sha256).hexdigest()


def new_token(prefix: str) -> str:
    """A fresh bearer secret: 256 random bits, with a short prefix saying what it is."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def _derive(material: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA256's extract-and-expand, one block)."""
    prk = hmac.new(b"hardal-mcp oauth v1", material, hashlib.sha256).digest()
    return hmac.new(prk, purpose + b"\x01", hashlib.sha256).digest()
