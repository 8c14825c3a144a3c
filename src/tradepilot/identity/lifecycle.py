"""Account lifecycle helpers shared by suspension and deletion: revoking every credential at
once, and the stop hooks other domains register.

Stop hooks: what other domains do when an account must stop acting on its own.

Suspension, a deletion request and the final purge first stop what the account has running.
Identity does not know orders or strategies, so each domain registers a hook, as it
registers usage counters in ``identity.usage``::

    @account_stop_hook("trading.cancel_open_orders")
    async def cancel_open_orders(stop: AccountStop) -> None:
        ...  # cancel in stop.session; enqueue venue calls as jobs in that same transaction

A hook runs inside the caller's transaction (``stop.session``): if it raises, the
suspension or deletion is not recorded and the error reaches the caller (a
``core.errors`` exception keeps its status and code). Hooks must be idempotent — a purge
runs them again for an account that was stopped at its deletion request, and a job retry
may run them twice. They must not open a transaction of their own (SQLite allows one
writer at a time; the caller already holds it).

After the change commits, identity announces it on the bus (``identity.user_changed``):
every replica drops the user's cached credentials, and a component holding long-lived
connections (the WebSocket hub) re-checks them and closes the ones that no longer
authenticate. Suspended users cannot authenticate at all, so new orders are refused by
construction; engines that resume work after a restart should skip accounts for which
``account_is_stopped`` is true.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.identity.models import ApiKey, User, UserSession

if TYPE_CHECKING:
    from tradepilot.identity.service import IdentityService
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.identity")


class StopReason(str, Enum):
    SUSPENDED = "suspended"
    DELETION_REQUESTED = "deletion_requested"
    PURGE = "purge"


@dataclass(frozen=True)
class AccountStop:
    runtime: Runtime
    session: AsyncSession
    user_id: uuid.UUID
    reason: StopReason


StopHook = Callable[[AccountStop], Awaitable[None]]
ACCOUNT_STOP_HOOKS: dict[str, StopHook] = {}


def account_stop_hook(name: str) -> Callable[[StopHook], StopHook]:
    """Register ``func`` under ``name`` (re-registering the same name replaces it)."""

    def register(func: StopHook) -> StopHook:
        ACCOUNT_STOP_HOOKS[name] = func
        return func

    return register


async def stop_account_activity(runtime: Runtime, session: AsyncSession, *, user_id: uuid.UUID,
                                reason: StopReason) -> list[str]:
    """Run every registered hook, in registration order; returns the names that ran."""
    stop = AccountStop(runtime=runtime, session=session, user_id=user_id, reason=reason)
    for name, hook in list(ACCOUNT_STOP_HOOKS.items()):
        await hook(stop)
        logger.info("account stop hook ran", extra={"hook": name, "target_user_id": str(user_id),
                                                    "reason": reason.value})
    return list(ACCOUNT_STOP_HOOKS)


def account_is_stopped(user: User) -> bool:
    """Suspended or deactivated: nothing should run on the account's behalf.

    An account pending deletion is not stopped: its owner may log in during the grace period,
    and the purge runs the hooks again."""
    return not user.is_active or user.suspended_at is not None


async def revoke_all_credentials(identity: IdentityService, session: AsyncSession, *, user_id: uuid.UUID,
                                 reason: str) -> tuple[int, int]:
    """Revoke every live session and API key of the user in the caller's transaction.

    Returns (sessions, keys) revoked. After the commit, call ``identity.announce_user_changed``:
    it drops the cached credentials on every replica, so they fail at once everywhere."""
    now = identity.clock.now()
    sessions = await session.execute(
        update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)
    )
    keys = await session.execute(
        update(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    return int(sessions.rowcount or 0), int(keys.rowcount or 0)  # type: ignore[attr-defined]
