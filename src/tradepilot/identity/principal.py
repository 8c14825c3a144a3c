"""Who is calling: the authenticated user, how they authenticated, and what they may do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

SCOPES = ("read", "trade", "admin")


@dataclass(frozen=True)
class AuthUser:
    id: uuid.UUID
    email: str
    role: str
    plan: str
    scopes: frozenset[str]
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    ip_allowlist: tuple[str, ...] = ()  # the account's own allow-list (settings), checked on every request
    two_factor: bool = False  # 2FA is enabled on the account (admins need it for admin endpoints)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "admin" in self.scopes


def session_scopes(role: str) -> frozenset[str]:
    """A logged-in session may do everything its role allows."""
    return frozenset(SCOPES) if role == "admin" else frozenset({"read", "trade"})
