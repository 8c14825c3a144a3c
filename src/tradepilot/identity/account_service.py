"""Account self-service: settings (with limits and the IP allow-list) and API keys."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from tradepilot.core.events import Event, Topics
from tradepilot.identity.account_schemas import (
    ApiKeyCreate,
    LimitsView,
    UserSettings,
    UserSettingsUpdate,
)
from tradepilot.identity.models import ApiKey, User
from tradepilot.identity.plans import LimitAbovePlan, check_user_limits, effective_limits, plan_limits
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.service import IdentityService, ip_allowed
from tradepilot.identity.usage import count_api_keys, current_usage


def settings_of(user: User) -> UserSettings:
    return UserSettings.model_validate(user.settings or {})


async def update_settings(identity: IdentityService, session: AsyncSession, *, principal: AuthUser,
                          changes: UserSettingsUpdate, ip: str | None) -> UserSettings:
    user = await identity.get_user(session, user_id=principal.id)
    merged = settings_of(user).model_copy(update={k: getattr(changes, k) for k in changes.model_fields_set
                                                  if getattr(changes, k) is not None})
    if changes.limits is not None:
        try:
            check_user_limits(user.plan, dict(changes.limits))
        except LimitAbovePlan as exc:
            raise Unprocessable(str(exc), code="limit_above_plan",
                                extra={"limit": exc.name, "plan_value": exc.allowed}) from None
    allowlist = [str(n) for n in merged.ip_allowlist]
    if allowlist and not ip_allowed(allowlist, ip):
        raise Unprocessable("This allow-list does not include the address you are connecting from; "
                            "saving it would lock you out.", code="allowlist_excludes_current_ip")
    user.settings = merged.model_dump(mode="json")
    user.updated_at = identity.clock.now()
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.SETTINGS_CHANGED, user_id=user.id,
                          ip=ip, details={"fields": sorted(changes.model_fields_set)})
    await session.commit()
    await identity.announce_user_changed(user.id)
    return merged


async def limits_view(identity: IdentityService, session: AsyncSession, *, principal: AuthUser) -> LimitsView:
    user = await identity.get_user(session, user_id=principal.id)
    own = settings_of(user).limits
    now = identity.clock.now()
    tomorrow = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=now.tzinfo)
    return LimitsView(plan=user.plan, limits=effective_limits(user.plan, dict(own)).as_dict(),
                      plan_limits=plan_limits(user.plan).as_dict(), usage=await current_usage(session, user.id),
                      resets_at=tomorrow)


async def create_api_key(identity: IdentityService, session: AsyncSession, *, principal: AuthUser,
                         request: ApiKeyCreate, ip: str | None) -> tuple[ApiKey, str]:
    """A new key and its full secret, which is shown once and never stored."""
    user = await identity.get_user(session, user_id=principal.id)
    if "admin" in request.scopes and user.role != "admin":
        raise Forbidden("Only administrators can create keys with the 'admin' scope.", code="insufficient_role")
    cap = effective_limits(user.plan, dict(settings_of(user).limits)).api_keys
    if await count_api_keys(session, user.id) >= cap:
        raise Conflict(f"Your plan allows {cap} API keys; revoke one first.", code="api_key_limit_reached")
    now = identity.clock.now()
    lookup, secret = secrets.token_hex(6), secrets.token_urlsafe(32)  # 256-bit secret
    key = ApiKey(user_id=user.id, name=request.name, lookup=lookup, secret_hash=identity.tokens.hash_api_secret(secret),
                 scopes=sorted(set(request.scopes)), allowed_ips=[str(n) for n in request.allowed_ips], created_at=now,
                 expires_at=now + timedelta(days=request.expires_in_days) if request.expires_in_days else None)
    session.add(key)
    await session.flush()
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.API_KEY_CREATED, user_id=user.id,
                          ip=ip, details={"api_key_id": str(key.id), "name": key.name, "scopes": key.scopes})
    await session.commit()
    return key, f"tp_{lookup}_{secret}"


async def list_api_keys(session: AsyncSession, *, user_id: uuid.UUID) -> list[ApiKey]:
    rows = await session.scalars(select(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
                                 .order_by(ApiKey.created_at.desc()))
    return list(rows)


async def revoke_api_key(identity: IdentityService, session: AsyncSession, *, key: ApiKey, ip: str | None) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=identity.clock.now()))
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.API_KEY_REVOKED, user_id=key.user_id,
                          ip=ip, details={"api_key_id": str(key.id), "name": key.name})
    await session.commit()
    identity.cache.api_keys.drop(key.lookup)
    await identity.publish_quietly(Event(topic=Topics.API_KEY_REVOKED, type="api_key.revoked",
                                         payload={"lookup": key.lookup, "user_id": str(key.user_id)}))


async def get_owned_api_key(session: AsyncSession, *, key_id: uuid.UUID, user_id: uuid.UUID) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.user_id != user_id or key.revoked_at is not None:
        raise NotFound("API key not found.", code="api_key_not_found")
    return key
