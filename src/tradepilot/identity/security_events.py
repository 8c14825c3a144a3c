"""The security event log: what happened to an account, readable by its owner.

Kinds are constants here so that a typo is an AttributeError, not a silently new kind.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.clock import Clock
from tradepilot.identity.models import SecurityEvent


class SecurityEventKind:
    REGISTERED = "account.registered"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_NEW_IP = "login.new_ip"
    ACCOUNT_LOCKED = "account.locked"
    SESSION_REVOKED = "session.revoked"
    REFRESH_REUSE = "session.refresh_reuse"
    LOGGED_OUT = "session.logged_out"
    PASSWORD_CHANGED = "password.changed"
    PASSWORD_RESET_REQUESTED = "password.reset_requested"
    PASSWORD_RESET = "password.reset"
    EMAIL_VERIFIED = "email.verified"
    TWO_FACTOR_ENABLED = "2fa.enabled"
    TWO_FACTOR_DISABLED = "2fa.disabled"
    TWO_FACTOR_FAILED = "2fa.failed"
    RECOVERY_CODE_USED = "2fa.recovery_code_used"
    RECOVERY_CODES_REGENERATED = "2fa.recovery_codes_regenerated"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    SETTINGS_CHANGED = "settings.changed"
    ACCOUNT_DELETION_REQUESTED = "account.deletion_requested"
    ADMIN_ACTION = "admin.action"
    PASSWORD_REENTERED = "password.reentered"  # identity.reauth: unlocks dangerous actions for 5 minutes


def record_security_event(
    session: AsyncSession,
    *,
    clock: Clock,
    kind: str,
    user_id: uuid.UUID | None,
    ip: str | None = None,
    user_agent: str | None = None,
    details: dict[str, Any] | None = None,
) -> SecurityEvent:
    """Add an event in the caller's transaction (it is kept only if the change commits)."""
    event = SecurityEvent(user_id=user_id, kind=kind, ip=ip, user_agent=(user_agent or "")[:255] or None,
                          details=details or {}, created_at=clock.now())
    session.add(event)
    return event
