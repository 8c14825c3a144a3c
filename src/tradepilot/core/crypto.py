"""Hashing of tokens and secrets. Passwords live in identity.passwords (argon2id)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def token_hmac(key: str, token: str, *, purpose: str) -> str:
    """HMAC-SHA-256 of a high-entropy token, keyed per purpose: a leaked table is useless."""
    derived = hashlib.sha256(f"{purpose}:{key}".encode()).digest()
    return hmac.new(derived, token.encode(), hashlib.sha256).hexdigest()


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
