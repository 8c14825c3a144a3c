"""Two-factor authentication: TOTP (RFC 6238) with replay prevention, recovery codes, emailed codes.

A TOTP code is accepted within one time step either side of now, and only once: accepting
it is a conditional update that moves ``user_account.totp_last_counter`` forward, so a
replayed code — even one sent twice at the same instant — finds the row already moved and
fails. Recovery codes and emailed codes are spent the same way, by a conditional update
of their ``used_at``. The TOTP secret is encrypted at rest (``core.secrets_box``).

Emailed codes are a fallback for logging in only: they are sent to someone who has just
proved the password, and they do not work for turning 2FA off or for new recovery codes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.crypto import constant_time_equals, token_hmac
from tradepilot.core.errors import Conflict, Forbidden, RateLimited, Unauthorized, Unprocessable
from tradepilot.core.secrets_box import SecretBox, SecretUnreadable, secret_box
from tradepilot.identity.models import User
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.security_notice import emit_security_alert
from tradepilot.identity.service import INVALID_CREDENTIALS, IdentityService, normalise_email
from tradepilot.identity.twofactor_models import EmailCode, RecoveryCode
from tradepilot.identity.twofactor_schemas import Enrolment, TwoFactorStatus
from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.identity.twofactor")

ISSUER = "TradePilot"
TOTP_DIGITS = 6
TOTP_INTERVAL = 30
TOTP_WINDOW = 1  # steps accepted either side of now: a phone clock up to ~30 s off still works

RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i to misread: ~49.5 bits per code
RECOVERY_CODE_LENGTH = 10

EMAIL_CODE_TTL = timedelta(minutes=10)
EMAIL_CODE_MAX_ATTEMPTS = 5
EMAIL_CODES_PER_WINDOW = 3
EMAIL_CODE_WINDOW = timedelta(minutes=10)


TOTP, RECOVERY, EMAIL = "totp", "recovery_code", "email_code"


# --- codes ---------------------------------------------------------------------------------

def new_totp_secret() -> str:
    """160 random bits (RFC 4226 §4), base32 without padding: 32 characters."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def make_totp(secret: str, *, digits: int = TOTP_DIGITS) -> pyotp.TOTP:
    """The TOTP of an account: HMAC-SHA-1, 30-second steps (what authenticator apps expect)."""
    return pyotp.TOTP(secret, digits=digits, digest=hashlib.sha1, interval=TOTP_INTERVAL, issuer=ISSUER)


def matching_step(totp: pyotp.TOTP, code: str, *, at: datetime, window: int = TOTP_WINDOW) -> int | None:
    """The time step within ``window`` steps of ``at`` whose code is ``code``, if any."""
    if len(code) != totp.digits or not code.isdigit():
        return None
    now_step = totp.timecode(at)
    found = None
    for step in range(now_step - window, now_step + window + 1):
        # every candidate is compared, in constant time, whichever matches
        if hmac.compare_digest(totp.generate_otp(step), code) and found is None:
            found = step
    return found


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_code(code: str) -> str:
    """Codes compare without spaces or dashes and case-insensitively."""
    return "".join(code.split()).replace("-", "").lower()


def new_email_code() -> str:
    return f"{secrets.randbelow(10 ** TOTP_DIGITS):0{TOTP_DIGITS}d}"


class SecondFactor:
    """``runtime.services["second_factor"]``: the login's second step and the 2FA use cases."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = runtime.clock

    @property
    def identity(self) -> IdentityService:
        return self.runtime.services["identity"]  # type: ignore[no-any-return]

    @property
    def box(self) -> SecretBox:
        return secret_box(self.runtime)

    def _hash(self, user_id: uuid.UUID, code: str, kind: str) -> str:
        return token_hmac(self.runtime.settings.secret_key.get_secret_value(), f"{user_id}:{code}",
                          purpose=f"2fa:{kind}")

    # --- the login's second step -----------------------------------------------------------

    async def require(self, session: AsyncSession, *, user: User, otp: str | None, ip: str | None) -> None:
        """Pass if the account has no 2FA or ``otp`` is a valid, unused code; the code is spent
        in the caller's transaction (not committed here)."""
        if user.totp_enabled_at is None:
            return
        if otp is None or not otp.strip():
            raise Unauthorized("Two-factor authentication is on for this account: send the code from your "
                               "authenticator app, a recovery code or an emailed code as `otp`.",
                               code="two_factor_required")
        factor = await self._check(session, user=user, code=otp, allow_email=True)
        if factor is None:
            record_security_event(session, clock=self.clock, kind=SecurityEventKind.TWO_FACTOR_FAILED,
                                  user_id=user.id, ip=ip)
            raise Unauthorized("The two-factor code is wrong, expired or already used.", code="invalid_otp")
        if factor == RECOVERY:
            await self._recovery_code_used(session, user=user, ip=ip)

    async def _check(self, session: AsyncSession, *, user: User, code: str, allow_email: bool) -> str | None:
        """Spend ``code`` if it is valid; which kind of factor it was, or None."""
        normal = normalise_code(code)
        if len(normal) == TOTP_DIGITS and normal.isdigit():
            step = self._totp_step(user, normal)
            if step is not None:
                return TOTP if await self._claim_step(session, user_id=user.id, step=step) else None
            if allow_email and await self._spend_email_code(session, user_id=user.id, code=normal):
                return EMAIL
            return None
        if len(normal) == RECOVERY_CODE_LENGTH:
            return RECOVERY if await self._spend_recovery_code(session, user_id=user.id, code=normal) else None
        return None

    def _totp_step(self, user: User, code: str) -> int | None:
        if user.totp_secret_encrypted is None:
            return None
        try:
            secret = self.box.decrypt(user.totp_secret_encrypted)
        except SecretUnreadable:
            # recovery codes still work; the operator must put the missing key back
            logger.error("a TOTP secret cannot be decrypted: check TRADEPILOT_ENCRYPTION_KEYS",
                         extra={"subject_user_id": str(user.id)})
            return None
        return matching_step(make_totp(secret), code, at=self.clock.now())

    async def _claim_step(self, session: AsyncSession, *, user_id: uuid.UUID, step: int, where: tuple[Any, ...] = (),
                          values: dict[str, Any] | None = None) -> bool:
        """Accept time step ``step`` once: the counter only moves forward, and only one
        transaction can move it past a given step."""
        claimed = await session.execute(
            update(User)
            .where(User.id == user_id, or_(User.totp_last_counter.is_(None), User.totp_last_counter < step), *where)
            .values(totp_last_counter=step, **(values or {}))
            .returning(User.id)
        )
        return claimed.scalar_one_or_none() is not None

    async def _spend_recovery_code(self, session: AsyncSession, *, user_id: uuid.UUID, code: str) -> bool:
        spent = await session.execute(
            update(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == self._hash(user_id, code, RECOVERY),
                   RecoveryCode.used_at.is_(None))
            .values(used_at=self.clock.now())
            .returning(RecoveryCode.id)
        )
        return spent.scalar_one_or_none() is not None

    async def _spend_email_code(self, session: AsyncSession, *, user_id: uuid.UUID, code: str) -> bool:
        """Only the newest live code counts; each wrong try uses up one of its attempts."""
        now = self.clock.now()
        live = (await session.execute(
            select(EmailCode.id, EmailCode.code_hash)
            .where(EmailCode.user_id == user_id, EmailCode.used_at.is_(None), EmailCode.expires_at > now,
                   EmailCode.attempts < EMAIL_CODE_MAX_ATTEMPTS)
            .order_by(EmailCode.created_at.desc())
            .limit(1)
        )).first()
        if live is None:
            return False
        if constant_time_equals(live.code_hash, self._hash(user_id, code, EMAIL)):
            spent = await session.execute(
                update(EmailCode)
                .where(EmailCode.id == live.id, EmailCode.used_at.is_(None),
                       EmailCode.attempts < EMAIL_CODE_MAX_ATTEMPTS)
                .values(used_at=now)
                .returning(EmailCode.id)
            )
            return spent.scalar_one_or_none() is not None
        await session.execute(update(EmailCode).where(EmailCode.id == live.id)
                              .values(attempts=EmailCode.attempts + 1))
        return False

    async def _recovery_code_used(self, session: AsyncSession, *, user: User, ip: str | None) -> None:
        left = await self._recovery_codes_left(session, user_id=user.id)
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.RECOVERY_CODE_USED, user_id=user.id,
                              ip=ip, details={"remaining": left})
        await self._alert(session, user, f"A recovery code was used to sign in ({left} left)", ip)

    async def _recovery_codes_left(self, session: AsyncSession, *, user_id: uuid.UUID) -> int:
        count = await session.scalar(select(func.count()).select_from(RecoveryCode)
                                     .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)))
        return int(count or 0)

    # --- enrolment and management ----------------------------------------------------------

    async def status(self, session: AsyncSession, *, principal: AuthUser) -> TwoFactorStatus:
        user = await self.identity.get_user(session, user_id=principal.id)
        enabled = user.totp_enabled_at is not None
        return TwoFactorStatus(enabled=enabled, pending=not enabled and user.totp_secret_encrypted is not None,
                               enabled_at=user.totp_enabled_at,
                               recovery_codes_left=await self._recovery_codes_left(session, user_id=user.id)
                               if enabled else 0)

    async def begin_enrolment(self, session: AsyncSession, *, principal: AuthUser, password: str,
                              ip: str | None) -> Enrolment:
        """A new secret, stored encrypted and pending until confirmed; replaces a pending one."""
        user = await self.identity.get_user(session, user_id=principal.id)
        if user.totp_enabled_at is not None:
            raise Conflict("Two-factor authentication is already on; turn it off first to enrol a new device.",
                           code="two_factor_already_enabled")
        await self._verify_password(session, user=user, password=password, ip=ip)
        secret = new_totp_secret()
        user.totp_secret_encrypted = self.box.encrypt(secret)
        user.totp_last_counter = None
        user.updated_at = self.clock.now()
        await session.commit()
        return Enrolment(secret=secret, issuer=ISSUER, account=user.email,
                         otpauth_uri=make_totp(secret).provisioning_uri(name=user.email, issuer_name=ISSUER))

    async def confirm_enrolment(self, session: AsyncSession, *, principal: AuthUser, code: str,
                                ip: str | None) -> list[str]:
        """The first code from the app turns 2FA on; the recovery codes are returned once."""
        user = await self.identity.get_user(session, user_id=principal.id)
        if user.totp_enabled_at is not None:
            raise Conflict("Two-factor authentication is already on.", code="two_factor_already_enabled")
        pending = user.totp_secret_encrypted
        if pending is None:
            raise Conflict("Start with /api/auth/2fa/enable.", code="two_factor_not_pending")
        now = self.clock.now()
        step = self._totp_step(user, normalise_code(code))
        if step is None or not await self._claim_step(
                session, user_id=user.id, step=step, values={"totp_enabled_at": now, "updated_at": now},
                where=(User.totp_enabled_at.is_(None), User.totp_secret_encrypted == pending)):
            raise Unprocessable("The code does not match. Check the time on your device and try again.",
                                code="invalid_otp")
        codes = await self._replace_recovery_codes(session, user_id=user.id)
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.TWO_FACTOR_ENABLED, user_id=user.id,
                              ip=ip)
        await self._alert(session, user, "Two-factor authentication was turned on", ip)
        await session.commit()
        await self.identity.announce_user_changed(user.id)
        return codes

    async def disable(self, session: AsyncSession, *, principal: AuthUser, password: str, code: str,
                      ip: str | None) -> None:
        """Needs the password and a code from the app or a recovery code (not an emailed code)."""
        user = await self._enabled_user(session, principal)
        await self._verify_password(session, user=user, password=password, ip=ip)
        await self._verify_code(session, user=user, code=code, ip=ip)
        await session.execute(update(User).where(User.id == user.id).values(
            totp_secret_encrypted=None, totp_enabled_at=None, totp_last_counter=None, updated_at=self.clock.now()))
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        await session.execute(delete(EmailCode).where(EmailCode.user_id == user.id))
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.TWO_FACTOR_DISABLED, user_id=user.id,
                              ip=ip)
        await self._alert(session, user, "Two-factor authentication was turned off", ip)
        await session.commit()
        await self.identity.announce_user_changed(user.id)

    async def regenerate_recovery_codes(self, session: AsyncSession, *, principal: AuthUser, password: str,
                                        code: str, ip: str | None) -> list[str]:
        """A new set of ten; every earlier code stops working."""
        user = await self._enabled_user(session, principal)
        await self._verify_password(session, user=user, password=password, ip=ip)
        await self._verify_code(session, user=user, code=code, ip=ip)
        codes = await self._replace_recovery_codes(session, user_id=user.id)
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.RECOVERY_CODES_REGENERATED, user_id=user.id, ip=ip)
        await self._alert(session, user, "New two-factor recovery codes were generated", ip)
        await session.commit()
        return codes

    async def _enabled_user(self, session: AsyncSession, principal: AuthUser) -> User:
        user = await self.identity.get_user(session, user_id=principal.id)
        if user.totp_enabled_at is None:
            raise Conflict("Two-factor authentication is not on.", code="two_factor_not_enabled")
        return user

    async def _replace_recovery_codes(self, session: AsyncSession, *, user_id: uuid.UUID) -> list[str]:
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        now = self.clock.now()
        codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        session.add_all(RecoveryCode(user_id=user_id, code_hash=self._hash(user_id, normalise_code(c), RECOVERY),
                                     created_at=now) for c in codes)
        return codes

    # --- checks of a logged-in user's password and code (count toward lockout) -------------

    async def _verify_password(self, session: AsyncSession, *, user: User, password: str, ip: str | None) -> None:
        guard = self.runtime.services.get("login_guard")
        if guard is not None:
            await guard.before_attempt(session, email=user.email, user=user, ip=ip)
        if not await asyncio.to_thread(self.identity.passwords.verify, user.password_hash, password):
            await self._failed(session, user=user, ip=ip, factor="password")
            raise Forbidden("The password is incorrect.", code="invalid_password")

    async def _verify_code(self, session: AsyncSession, *, user: User, code: str, ip: str | None) -> None:
        factor = await self._check(session, user=user, code=code, allow_email=False)
        if factor is None:
            record_security_event(session, clock=self.clock, kind=SecurityEventKind.TWO_FACTOR_FAILED,
                                  user_id=user.id, ip=ip)
            await self._failed(session, user=user, ip=ip, factor="second_factor")
            raise Forbidden("The two-factor code is wrong or already used.", code="invalid_otp")
        if factor == RECOVERY:
            await self._recovery_code_used(session, user=user, ip=ip)

    async def _failed(self, session: AsyncSession, *, user: User, ip: str | None, factor: str) -> None:
        """Let the login guard count the failure; committed although the request fails."""
        guard = self.runtime.services.get("login_guard")
        if guard is not None:
            await guard.on_failure(session, user=user, ip=ip, factor=factor)
        await session.commit()

    # --- emailed codes ---------------------------------------------------------------------

    async def send_email_code(self, session: AsyncSession, *, email: str, password: str, ip: str | None,
                              user_agent: str | None) -> datetime:
        """Mail a six-digit login code to the owner of these credentials; when it expires.

        The password is checked like a login's (same lockout, same cost for unknown emails),
        so the mailbox alone never yields a code.
        """
        identity = self.identity
        guard = self.runtime.services.get("login_guard")
        user = await session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is not None and not user.is_active:
            user = None
        if guard is not None:
            await guard.before_attempt(session, email=normalise_email(email), user=user, ip=ip)
        if not await asyncio.to_thread(identity.passwords.verify, user.password_hash if user else None, password):
            if guard is not None:
                await guard.on_failure(session, user=user, ip=ip, factor="password")
            if user is not None:
                record_security_event(session, clock=self.clock, kind=SecurityEventKind.LOGIN_FAILED,
                                      user_id=user.id, ip=ip, user_agent=user_agent,
                                      details={"factor": "password", "step": "email_code"})
            await session.commit()
            raise Unauthorized(INVALID_CREDENTIALS, code="invalid_credentials")
        assert user is not None
        if user.totp_enabled_at is None:
            raise Conflict("Two-factor authentication is not on for this account; log in with the password alone.",
                           code="two_factor_not_enabled")
        # one request at a time per account, so the limit below holds under concurrency
        await session.execute(select(User.id).where(User.id == user.id).with_for_update())
        now = self.clock.now()
        recent = list(await session.scalars(
            select(EmailCode.created_at)
            .where(EmailCode.user_id == user.id, EmailCode.created_at > now - EMAIL_CODE_WINDOW)
            .order_by(EmailCode.created_at)
        ))
        if len(recent) >= EMAIL_CODES_PER_WINDOW:
            wait = math.ceil((recent[0] + EMAIL_CODE_WINDOW - now).total_seconds())
            await session.rollback()
            raise RateLimited(f"At most {EMAIL_CODES_PER_WINDOW} codes per {EMAIL_CODE_WINDOW.seconds // 60} "
                              "minutes; use the last one sent, or try again later.",
                              code="email_code_rate_limited", headers={"Retry-After": str(max(wait, 1))})
        # only the newest code is live: an older one stops working
        await session.execute(update(EmailCode).where(EmailCode.user_id == user.id, EmailCode.used_at.is_(None))
                              .values(used_at=now))
        code = new_email_code()
        expires_at = now + EMAIL_CODE_TTL
        session.add(EmailCode(user_id=user.id, code_hash=self._hash(user.id, code, EMAIL), created_at=now,
                              expires_at=expires_at, attempts=0))
        await self.runtime.services["email"].send(
            session, to=user.email, template="two_factor_code", user_id=user.id,
            context={"name": user.display_name, "code": code, "ip": ip,
                     "expires_minutes": int(EMAIL_CODE_TTL.total_seconds() // 60)})
        await session.commit()
        return expires_at

    async def _alert(self, session: AsyncSession, user: User, event: str, ip: str | None) -> None:
        await emit_security_alert(session, user_id=user.id, event=event, ip=ip, now=self.clock.now())
        await self.runtime.services["email"].send(
            session, to=user.email, template="security_alert", user_id=user.id,
            context={"name": user.display_name, "event": event, "ip": ip,
                     "occurred_at": self.clock.now().strftime("%Y-%m-%d %H:%M UTC")})
