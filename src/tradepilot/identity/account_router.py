"""HTTP edge of account self-service: /api/users/me/settings, /api-keys, /limits."""

from __future__ import annotations

from fastapi import Response, status

from tradepilot.core.deps import ClientIP, DbSession
from tradepilot.core.routing import api_router
from tradepilot.identity import account_service
from tradepilot.identity.account_schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyInfo,
    LimitsView,
    UserSettings,
    UserSettingsUpdate,
)
from tradepilot.identity.deps import CurrentUser, Identity, OwnedApiKey
from tradepilot.identity.models import ApiKey

router = api_router(prefix="/api/users/me", tags=["users"])


def key_info(key: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(id=key.id, name=key.name, prefix=f"tp_{key.lookup}", scopes=list(key.scopes),
                      allowed_ips=list(key.allowed_ips or []), created_at=key.created_at,
                      last_used_at=key.last_used_at, expires_at=key.expires_at)


@router.get("/settings", response_model=UserSettings)
async def get_settings(principal: CurrentUser, db: DbSession, identity: Identity) -> UserSettings:
    return account_service.settings_of(await identity.get_user(db, user_id=principal.id))


@router.put("/settings", response_model=UserSettings)
async def put_settings(body: UserSettingsUpdate, principal: CurrentUser, db: DbSession, identity: Identity,
                       ip: ClientIP) -> UserSettings:
    """Change the fields sent. Your own limits may only be lower than your plan's."""
    return await account_service.update_settings(identity, db, principal=principal, changes=body, ip=ip)


@router.get("/limits", response_model=LimitsView)
async def get_limits(principal: CurrentUser, db: DbSession, identity: Identity) -> LimitsView:
    """Your plan, its limits, your effective limits (min of yours and the plan's) and usage."""
    return await account_service.limits_view(identity, db, principal=principal)


@router.get("/api-keys", response_model=list[ApiKeyInfo])
async def list_api_keys(principal: CurrentUser, db: DbSession) -> list[ApiKeyInfo]:
    return [key_info(k) for k in await account_service.list_api_keys(db, user_id=principal.id)]


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, principal: CurrentUser, db: DbSession, identity: Identity,
                         ip: ClientIP) -> ApiKeyCreated:
    """Create a key. The full key is in this answer only; store it now."""
    key, secret = await account_service.create_api_key(identity, db, principal=principal, request=body, ip=ip)
    return ApiKeyCreated(**key_info(key).model_dump(), key=secret)


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(key: OwnedApiKey, db: DbSession, identity: Identity, ip: ClientIP) -> Response:
    """Revoke a key; it stops working at once on every replica."""
    await account_service.revoke_api_key(identity, db, key=key, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
