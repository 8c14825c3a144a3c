"""HTTP edge of two-factor authentication: /api/auth/2fa/*."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Response, status

from tradepilot.core.deps import ClientIP, DbSession, RuntimeDep
from tradepilot.core.errors import Forbidden
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import CurrentUser
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.twofactor import EMAIL_CODE_TTL, SecondFactor
from tradepilot.identity.twofactor_schemas import (
    CodeBody,
    EmailCodeRequest,
    EmailCodeSent,
    Enrolment,
    PasswordAndCode,
    PasswordBody,
    RecoveryCodes,
    TwoFactorStatus,
)

router = api_router(prefix="/api/auth/2fa", tags=["2fa"])

NO_STORE = "no-store"  # secrets and recovery codes must not sit in a cache


def get_second_factor(runtime: RuntimeDep) -> SecondFactor:
    return runtime.services["second_factor"]  # type: ignore[no-any-return]


SecondFactorDep = Annotated[SecondFactor, Depends(get_second_factor)]


def get_session_user(principal: CurrentUser) -> AuthUser:
    """Changing the second factor needs a logged-in session: an API key cannot do it."""
    if principal.session_id is None:
        raise Forbidden("Two-factor settings can be changed only from a logged-in session, not with an API key.",
                        code="session_required")
    return principal


SessionUser = Annotated[AuthUser, Depends(get_session_user)]


@router.get("/status", response_model=TwoFactorStatus)
async def get_status(principal: CurrentUser, db: DbSession, second_factor: SecondFactorDep) -> TwoFactorStatus:
    """Whether 2FA is on, pending confirmation, and how many recovery codes are left."""
    return await second_factor.status(db, principal=principal)


@router.post("/enable", response_model=Enrolment)
async def enable(body: PasswordBody, principal: SessionUser, db: DbSession, second_factor: SecondFactorDep,
                 ip: ClientIP, response: Response) -> Enrolment:
    """Issue a TOTP secret (and its `otpauth://` URI for a QR code). Nothing changes for logins
    until `/confirm`; calling this again replaces a pending secret. 409 if 2FA is already on."""
    response.headers["Cache-Control"] = NO_STORE
    return await second_factor.begin_enrolment(db, principal=principal, password=body.password, ip=ip)


@router.post("/confirm", response_model=RecoveryCodes)
async def confirm(body: CodeBody, principal: SessionUser, db: DbSession, second_factor: SecondFactorDep,
                  ip: ClientIP, response: Response) -> RecoveryCodes:
    """Turn 2FA on with the first code from the app; answers the ten recovery codes, once."""
    response.headers["Cache-Control"] = NO_STORE
    return RecoveryCodes(recovery_codes=await second_factor.confirm_enrolment(db, principal=principal,
                                                                              code=body.code, ip=ip))


@router.post("/disable", status_code=status.HTTP_204_NO_CONTENT)
async def disable(body: PasswordAndCode, principal: SessionUser, db: DbSession, second_factor: SecondFactorDep,
                  ip: ClientIP) -> Response:
    """Turn 2FA off: needs the password and a code from the app (or a recovery code)."""
    await second_factor.disable(db, principal=principal, password=body.password, code=body.code, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/recovery-codes", response_model=RecoveryCodes)
async def recovery_codes(body: PasswordAndCode, principal: SessionUser, db: DbSession,
                         second_factor: SecondFactorDep, ip: ClientIP, response: Response) -> RecoveryCodes:
    """Replace the recovery codes with ten new ones (password and a code needed)."""
    response.headers["Cache-Control"] = NO_STORE
    return RecoveryCodes(recovery_codes=await second_factor.regenerate_recovery_codes(
        db, principal=principal, password=body.password, code=body.code, ip=ip))


@router.post("/email-code", status_code=status.HTTP_202_ACCEPTED, response_model=EmailCodeSent)
async def email_code(body: EmailCodeRequest, db: DbSession, second_factor: SecondFactorDep, ip: ClientIP,
                     user_agent: Annotated[str | None, Header()] = None) -> EmailCodeSent:
    """Mail a six-digit code for a login in progress (send the login's email and password);
    log in with it as `otp`. At most 3 per 10 minutes; each works once, for 10 minutes."""
    expires_at = await second_factor.send_email_code(db, email=body.email, password=body.password, ip=ip,
                                                     user_agent=user_agent)
    minutes = int(EMAIL_CODE_TTL.total_seconds() // 60)
    return EmailCodeSent(detail=f"A code is on its way to the account's email address. It works once, "
                                f"for {minutes} minutes.", expires_at=expires_at)
