"""Identity use cases: register, log in, refresh, log out, sessions, profile, authentication."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.crypto import constant_time_equals
from tradepilot.core.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from tradepilot.core.events import Event, Topics
from tradepilot.identity.models import ApiKey, RefreshToken, User, UserSession
from tradepilot.identity.passwords import PasswordHashing, PasswordPolicyError, check_policy
from tradepilot.identity.principal import AuthUser, session_scopes
from tradepilot.identity.schemas import ProfileUpdate, TokenPair
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.session_cache import AuthCache, CachedApiKey
from tradepilot.identity.tokens import InvalidToken, TokenService
from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.identity")

INVALID_CREDENTIALS = "Email or password is incorrect."


def normalise_email(email: str) -> str:
    return email.strip().lower()


class IdentityService:
    """Stateless apart from configuration; one per process (``runtime.services["identity"]``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self.passwords = PasswordHashing(runtime.settings)
        self.tokens = TokenService(runtime.settings)
        # other parts add work to a registration's transaction (verification mail, paper account)
        self.registration_hooks: list[Callable[[AsyncSession, User], Awaitable[None]]] = []

    @property
    def cache(self) -> AuthCache:
        return self.runtime.services["auth_cache"]  # type: ignore[no-any-return]

    # --- accounts ----------------------------------------------------------------------

    async def register(self, session: AsyncSession, *, email: str, password: str, role: str = "user") -> User:
        email = normalise_email(email)
        try:
            check_policy(password, email=email)
        except PasswordPolicyError as exc:
            raise Unprocessable(str(exc), code=exc.code) from None
        password_hash = await asyncio.to_thread(self.passwords.hash, password)
        now = self.clock.now()
        user = User(email=email, password_hash=password_hash, role=role, plan="free",
                    password_changed_at=now, created_at=now, updated_at=now)
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:
            await session.rollback()
            raise Conflict("An account with this email already exists.", code="email_taken") from None
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.REGISTERED, user_id=user.id)
        for hook in self.registration_hooks:
            await hook(session, user)
        await session.commit()
        logger.info("user registered", extra={"registered_user_id": str(user.id)})
        return user

    async def update_profile(self, session: AsyncSession, *, user_id: uuid.UUID, changes: ProfileUpdate) -> User:
        user = await self.get_user(session, user_id=user_id)
        for field in changes.model_fields_set:
            value = getattr(changes, field)
            if field == "timezone" and value is None:
                raise Unprocessable("timezone cannot be null", code="validation_error")
            setattr(user, field, value)
        user.updated_at = self.clock.now()
        await session.commit()
        return user

    async def get_user(self, session: AsyncSession, *, user_id: uuid.UUID) -> User:
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            raise NotFound("User not found.", code="user_not_found")
        return user

    # --- login and tokens ------------------------------------------------------------

    async def login(self, session: AsyncSession, *, email: str, password: str, ip: str | None,
                    user_agent: str | None, otp: str | None = None) -> TokenPair:
        """Password, then the second factor when 2FA is on; the login guard (lockout, new-IP
        alerts) and the second factor are services other modules install."""
        guard = self.runtime.services.get("login_guard")
        second_factor = self.runtime.services.get("second_factor")
        user = await session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is not None and not user.is_active:
            user = None
        if guard is not None:
            await guard.before_attempt(session, email=normalise_email(email), user=user, ip=ip)
        # the dummy hash makes unknown emails cost the same as wrong passwords
        if not await asyncio.to_thread(self.passwords.verify, user.password_hash if user else None, password):
            await self._login_failed(session, user=user, ip=ip, user_agent=user_agent, factor="password")
            raise Unauthorized(INVALID_CREDENTIALS, code="invalid_credentials")
        assert user is not None
        if user.suspended_at is not None:  # told only to someone who knows the password
            raise Forbidden("This account is suspended. Contact the operator of this service.",
                            code="account_suspended")
        if second_factor is not None:
            try:
                await second_factor.require(session, user=user, otp=otp, ip=ip)
            except Unauthorized as exc:
                if exc.code != "two_factor_required":  # a wrong code counts; a missing one does not
                    await self._login_failed(session, user=user, ip=ip, user_agent=user_agent, factor="second_factor")
                raise
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await asyncio.to_thread(self.passwords.hash, password)
        now = self.clock.now()
        login = UserSession(user_id=user.id, created_at=now, last_used_at=now,
                            expires_at=now + timedelta(seconds=self.runtime.settings.refresh_token_ttl_seconds),
                            ip=ip, user_agent=(user_agent or "")[:255] or None)
        session.add(login)
        await session.flush()
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.LOGIN_SUCCEEDED, user_id=user.id,
                              ip=ip, user_agent=user_agent, details={"session_id": str(login.id)})
        if guard is not None:
            await guard.on_success(session, user=user, ip=ip, user_agent=user_agent)
        pair = self._issue(session, user_id=user.id, session_id=login.id)
        await session.commit()
        return pair

    async def _login_failed(self, session: AsyncSession, *, user: User | None, ip: str | None,
                            user_agent: str | None, factor: str) -> None:
        """Record the failure and let the guard count it; committed although the login fails."""
        guard = self.runtime.services.get("login_guard")
        if guard is not None:
            await guard.on_failure(session, user=user, ip=ip, factor=factor)
        if user is not None:
            record_security_event(session, clock=self.clock, kind=SecurityEventKind.LOGIN_FAILED, user_id=user.id,
                                  ip=ip, user_agent=user_agent, details={"factor": factor})
        await session.commit()

    def _issue(self, session: AsyncSession, *, user_id: uuid.UUID, session_id: uuid.UUID) -> TokenPair:
        now = self.clock.now()
        refresh, refresh_hash = self.tokens.new_refresh_token()
        session.add(RefreshToken(session_id=session_id, token_hash=refresh_hash, created_at=now))
        access = self.tokens.issue_access(user_id=user_id, session_id=session_id, now=now)
        return TokenPair(access_token=access, refresh_token=refresh,
                         expires_in=int(self.tokens.access_ttl.total_seconds()))

    async def refresh(self, session: AsyncSession, *, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is spent; presenting a spent one revokes the session."""
        now = self.clock.now()
        token_hash = self.tokens.hash_refresh(refresh_token)
        claimed = await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == token_hash, RefreshToken.rotated_at.is_(None))
            .values(rotated_at=now)
            .returning(RefreshToken.session_id)
        )
        session_id = claimed.scalar_one_or_none()
        if session_id is None:
            spent = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
            if spent is not None:
                owner = await session.get(UserSession, spent.session_id)
                await self._revoke(session, session_id=spent.session_id, reason="refresh_reuse")
                record_security_event(session, clock=self.clock, kind=SecurityEventKind.REFRESH_REUSE,
                                      user_id=owner.user_id if owner else None,
                                      details={"session_id": str(spent.session_id)})
                await session.commit()
                if owner is not None:
                    await self._announce_revocation(owner.id, owner.user_id)
                logger.warning("refresh token reuse: session revoked",
                               extra={"session_id": str(spent.session_id)})
                raise Unauthorized("Refresh token was already used; the session has been revoked.",
                                   code="refresh_token_reused")
            raise Unauthorized("Invalid refresh token.", code="invalid_refresh_token")
        login = await session.get(UserSession, session_id)
        assert login is not None
        user = await session.get(User, login.user_id)
        if login.revoked_at is not None or login.expires_at <= now or user is None or not user.is_active:
            await session.rollback()
            raise Unauthorized("The session has ended; log in again.", code="session_expired")
        login.last_used_at = now
        pair = self._issue(session, user_id=login.user_id, session_id=login.id)
        await session.commit()
        return pair

    async def logout(self, session: AsyncSession, *, principal: AuthUser) -> None:
        if principal.session_id is None:
            raise Unprocessable("API keys have no session to log out of.", code="no_session")
        await self._revoke(session, session_id=principal.session_id, reason="logout")
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.LOGGED_OUT, user_id=principal.id,
                              details={"session_id": str(principal.session_id)})
        await session.commit()
        await self._announce_revocation(principal.session_id, principal.id)

    # --- sessions ----------------------------------------------------------------------

    async def list_sessions(self, session: AsyncSession, *, user_id: uuid.UUID) -> list[UserSession]:
        now = self.clock.now()
        rows = await session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None), UserSession.expires_at > now)
            .order_by(UserSession.last_used_at.desc())
        )
        return list(rows)

    async def revoke_session(self, session: AsyncSession, *, target: UserSession) -> None:
        await self._revoke(session, session_id=target.id, reason="revoked_by_user")
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.SESSION_REVOKED,
                              user_id=target.user_id, details={"session_id": str(target.id)})
        await session.commit()
        await self._announce_revocation(target.id, target.user_id)

    async def _revoke(self, session: AsyncSession, *, session_id: uuid.UUID, reason: str) -> None:
        await session.execute(
            update(UserSession)
            .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=self.clock.now(), revoke_reason=reason)
        )
        self.cache.sessions.drop(session_id)

    async def _announce_revocation(self, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Tell every replica's cache at once (the cache's TTL is the safety net)."""
        self.cache.sessions.drop(session_id)
        await self.publish_quietly(Event(topic=Topics.SESSION_REVOKED, type="session.revoked",
                                         payload={"session_id": str(session_id), "user_id": str(user_id)}))

    async def announce_user_changed(self, user_id: uuid.UUID) -> None:
        """Role, plan, settings or status changed: every replica reloads this user's credentials."""
        self.cache.sessions.drop_user(user_id)
        self.cache.api_keys.drop_user(user_id)
        await self.publish_quietly(Event(topic=Topics.USER_CHANGED, type="user.changed",
                                         payload={"user_id": str(user_id)}))

    async def publish_quietly(self, event: Event) -> None:
        """Broadcast a cache invalidation; if the bus is down, caches still expire on their own."""
        try:
            await self.runtime.bus.publish(event)
        except Exception:
            logger.warning("could not broadcast %s; caches expire on their own", event.type, exc_info=True)

    # --- authentication of requests -----------------------------------------------------

    async def authenticate_bearer(self, token: str) -> AuthUser:
        now = self.clock.now()
        try:
            claims = self.tokens.decode_access(token, now=now)
        except InvalidToken:
            raise Unauthorized("Invalid or expired access token.", code="invalid_token") from None
        principal = await self.cache.sessions.get(claims.session_id, lambda: self._load_session(claims.session_id))
        if principal is None or principal.id != claims.user_id:
            raise Unauthorized("The session has ended; log in again.", code="session_revoked")
        return principal

    async def _load_session(self, session_id: uuid.UUID) -> AuthUser | None:
        async with self.runtime.db.read() as session:  # a snapshot read, off SQLite's write lock
            row = (await session.execute(
                select(UserSession, User).join(User, User.id == UserSession.user_id).where(UserSession.id == session_id)
            )).first()
        if row is None:
            return None
        login, user = row
        if (login.revoked_at is not None or login.expires_at <= self.clock.now() or not user.is_active
                or user.suspended_at is not None):
            return None
        return AuthUser(id=user.id, email=user.email, role=user.role, plan=user.plan,
                        scopes=session_scopes(user.role), session_id=login.id, ip_allowlist=_allowlist(user),
                        two_factor=user.totp_enabled_at is not None)

    async def authenticate_api_key(self, presented: str, *, ip: str | None) -> AuthUser:
        parsed = parse_api_key(presented)
        if parsed is None:
            raise Unauthorized("Invalid API key.", code="invalid_api_key")
        lookup, secret = parsed
        # the cache holds the key's record, never a verdict on a presented secret, so a wrong
        # guess cannot lock the real key out
        entry = await self.cache.api_keys.get(lookup, lambda: self._load_api_key(lookup))
        if entry is None or not constant_time_equals(entry.secret_hash, self.tokens.hash_api_secret(secret)):
            raise Unauthorized("Invalid API key.", code="invalid_api_key")
        if not ip_allowed(entry.allowed_ips, ip):
            raise Unauthorized("This API key may not be used from this address.", code="api_key_ip_not_allowed")
        return entry.principal

    async def _load_api_key(self, lookup: str) -> CachedApiKey | None:
        now = self.clock.now()
        async with self.runtime.db.transaction() as session:
            row = (await session.execute(
                select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.lookup == lookup)
            )).first()
            if row is None:
                return None
            key, user = row
            if (key.revoked_at is not None or (key.expires_at and key.expires_at <= now) or not user.is_active
                    or user.suspended_at is not None):
                return None
            # "last used" is as fresh as the cache: one write per key per few seconds at most
            key.last_used_at = now
        # the owner's role caps the key's scopes at every load: a demoted admin's key loses admin
        scopes = frozenset(key.scopes) & session_scopes(user.role)
        principal = AuthUser(id=user.id, email=user.email, role=user.role, plan=user.plan, scopes=scopes,
                             api_key_id=key.id, ip_allowlist=_allowlist(user),
                             two_factor=user.totp_enabled_at is not None)
        return CachedApiKey(principal=principal, secret_hash=key.secret_hash, allowed_ips=tuple(key.allowed_ips or ()))

def _allowlist(user: User) -> tuple[str, ...]:
    return tuple(str(n) for n in (user.settings or {}).get("ip_allowlist", ()))


def parse_api_key(presented: str) -> tuple[str, str] | None:
    """``tp_<12 hex lookup>_<secret>`` → (lookup, secret)."""
    if not presented.startswith("tp_") or len(presented) < 40 or presented[15:16] != "_":
        return None
    lookup, secret = presented[3:15], presented[16:]
    if not all(c in "0123456789abcdef" for c in lookup):
        return None
    return lookup, secret


def ip_allowed(allowed: tuple[str, ...] | list[str], ip: str | None) -> bool:
    if not allowed:
        return True
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowed)
