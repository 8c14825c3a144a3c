"""Password policy (NIST 800-63B: length and a common-password list, no composition rules)
and argon2id hashing."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tradepilot.config import Settings

MIN_LENGTH = 8
MAX_LENGTH = 128
_COMMON_FILE = Path(__file__).parent / "data" / "common_passwords.txt"


class PasswordPolicyError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = _COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def check_policy(password: str, *, email: str | None = None) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError("weak_password", f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError("weak_password", f"password must be at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in common_passwords():
        raise PasswordPolicyError("common_password", "this password is too common; choose another")
    if email and lowered in {email.lower(), email.split("@")[0].lower()}:
        raise PasswordPolicyError("weak_password", "password must not be your email address")


class PasswordHashing:
    """argon2id with the configured cost; rehashes transparently when the cost goes up."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost_kib,
            parallelism=settings.argon2_parallelism,
        )
        # verifying against this keeps unknown-email logins as slow as known ones
        self._dummy = self._hasher.hash("timing-equaliser-not-a-password")

    @property
    def hasher(self) -> PasswordHasher:
        return self._hasher

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
