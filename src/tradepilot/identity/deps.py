"""Authentication dependencies: ``CurrentUser``, scopes, admin, and owned sessions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tradepilot.core.context import user_id_var
from tradepilot.core.deps import ClientIP, DbSession, RuntimeDep
from tradepilot.core.errors import Forbidden, NotFound, Unauthorized
from tradepilot.core.ownership import ownership_dependency
from tradepilot.identity.account_service import get_owned_api_key
from tradepilot.identity.models import ApiKey, UserSession
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.service import IdentityService, ip_allowed

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="tp_… API key")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tradepilot"'}


def get_identity(runtime: RuntimeDep) -> IdentityService:
    return runtime.services["identity"]  # type: ignore[no-any-return]


Identity = Annotated[IdentityService, Depends(get_identity)]


async def get_optional_user(
    request: Request,
    identity: Identity,
    ip: ClientIP,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> AuthUser | None:
    if bearer is not None and api_key is not None:
        raise Unauthorized("Send either a bearer token or an API key, not both.", code="ambiguous_credentials",
                           headers=_CHALLENGE)
    if bearer is not None:
        principal = await identity.authenticate_bearer(bearer.credentials)
    elif api_key is not None:
        principal = await identity.authenticate_api_key(api_key, ip=ip)
    elif request.headers.get("authorization"):
        raise Unauthorized("Unsupported authorization scheme; use Bearer.", code="invalid_token", headers=_CHALLENGE)
    else:
        return None
    if not ip_allowed(principal.ip_allowlist, ip):
        raise Forbidden("Your account does not accept requests from this address.", code="ip_not_allowed")
    user_id_var.set(str(principal.id))
    return principal


async def get_current_user(principal: Annotated[AuthUser | None, Depends(get_optional_user)]) -> AuthUser:
    if principal is None:
        raise Unauthorized("Authentication required.", code="not_authenticated", headers=_CHALLENGE)
    return principal


CurrentUser = Annotated[AuthUser, Depends(get_current_user)]
OptionalUser = Annotated[AuthUser | None, Depends(get_optional_user)]


def require_scope(scope: str) -> Callable[..., AuthUser]:
    """A dependency that lets the caller through only with ``scope`` (API keys are scoped)."""

    def check(principal: CurrentUser) -> AuthUser:
        if scope not in principal.scopes:
            raise Forbidden(f"This credential lacks the '{scope}' scope.", code="insufficient_scope")
        return principal

    check.__name__ = f"require_scope_{scope}"
    return check


def get_admin(principal: CurrentUser) -> AuthUser:
    if not principal.is_admin:
        raise Forbidden("Administrators only.", code="admin_required")
    if not principal.two_factor:
        raise Forbidden("Administrators must turn on two-factor authentication (/api/auth/2fa/enable) first.",
                        code="two_factor_required_for_admin")
    return principal


AdminUser = Annotated[AuthUser, Depends(get_admin)]


@ownership_dependency
async def owned_session(session_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> UserSession:
    target = await db.get(UserSession, session_id)
    if target is None or target.user_id != principal.id or target.revoked_at is not None:
        raise NotFound("Session not found.", code="session_not_found")
    return target


OwnedSession = Annotated[UserSession, Depends(owned_session)]


@ownership_dependency
async def owned_api_key(key_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> ApiKey:
    return await get_owned_api_key(db, key_id=key_id, user_id=principal.id)


OwnedApiKey = Annotated[ApiKey, Depends(owned_api_key)]
