"""The login guard: per-account progressive lockout, per-IP failure throttling, new-address alerts.

``IdentityService.login`` (and the 2FA checks) call ``before_attempt`` → ``on_failure`` or
``on_success`` with the request's session; the caller commits.

- Failures are counted per account (an HMAC of the normalised email), never per IP, and an
  address without an account is counted and locked exactly like one with: status, body,
  ``Retry-After`` and the work done are the same, so the guard reveals nothing.
- After ``login_lockout_threshold`` (5) failures the account locks for
  ``login_lockout_base_seconds`` (60 s); each further failure doubles the lock, capped at
  ``login_lockout_max_seconds`` (15 min). While locked, even the right password is refused
  without being checked. An hour without failures forgets them; a success resets them.
- Failures from an address the account has logged in from before ("known") are counted
  apart from the rest, so a stranger's guessing cannot lock the owner out at home. A
  password reset lifts a lock (the owner proved control of the mailbox).
- Failures from one client IP across all accounts go into the rate limiter's windows
  (``login_ip_failure_limits``, 20/minute and 100/hour): past them, that IP's login
  attempts are refused (``too_many_login_attempts``) until the window slides.
- A successful login from an address the user never logged in from records
  ``login.new_ip`` and mails a security alert, except for the account's very first login.

Times come from ``runtime.clock``; attempts on one account are serialised by a row lock
(PostgreSQL; SQLite serialises writers anyway), so parallel guesses cannot slip past a lock.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.crypto import token_hmac
from tradepilot.core.db import new_id
from tradepilot.core.errors import RateLimited
from tradepilot.identity.guard_models import KnownLoginAddress, LoginFailureCounter
from tradepilot.identity.models import User
from tradepilot.identity.ratelimit import RateLimiter, address_key, ip_failure_limits
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.security_notice import emit_security_alert
from tradepilot.runtime import Runtime

KNOWN = "known"
OTHER = "other"
_NOBODY = uuid.UUID(int=0)
_ATTEMPT = "login_guard.attempt"  # session.info: (account_key, source) of the attempt under way
PURGE_INTERVAL_SECONDS = 3600.0
LOCKED_DETAIL = "Too many failed sign-in attempts for this account; try again later."
THROTTLED_DETAIL = "Too many failed sign-in attempts from your network; try again later."
NEW_ADDRESS_EVENT = "New sign-in from a new address"


def lock_seconds(failures: int, *, threshold: int, base: int, cap: int) -> int:
    """0 below ``threshold``; then ``base`` doubling per further failure, at most ``cap``."""
    if failures < threshold:
        return 0
    return min(cap, base * 2 ** min(failures - threshold, 32))


class LoginGuard:
    """``runtime.services["login_guard"]``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self.settings = runtime.settings
        self.ip_limits = ip_failure_limits(runtime)
        self._last_purge = -math.inf

    @property
    def limiter(self) -> RateLimiter:
        return self.runtime.services["rate_limiter"]  # type: ignore[no-any-return]

    def account_key(self, email: str) -> str:
        return token_hmac(self.settings.secret_key.get_secret_value(), email.strip().lower(),
                          purpose="login-guard:account")

    # --- the three hooks ---------------------------------------------------------------

    async def before_attempt(self, session: AsyncSession, *, email: str, user: User | None, ip: str | None) -> None:
        """Refuse (429) when this IP is throttled or this account is locked for this source."""
        if ip is not None:
            wait = await self.limiter.wait_needed(self.ip_limits, "login-failures", address_key(ip))
            if wait is not None:
                raise RateLimited(THROTTLED_DETAIL, code="too_many_login_attempts",
                                  headers={"Retry-After": str(wait)})
        key = self.account_key(email)
        # the same query whether or not the account exists: no timing difference
        source = KNOWN if await self._is_known(session, user, ip) and user is not None else OTHER
        session.info[_ATTEMPT] = (key, source)
        counter = await self._lock_counter(session, key, source)
        now = self.clock.now()
        last = counter.last_failure_at
        if user is not None and last is not None and user.password_changed_at > last:
            # the password was changed (reset by email) since: those failures no longer count
            counter.failures, counter.last_failure_at, counter.locked_until, counter.updated_at = 0, None, None, now
        if counter.locked_until is None or counter.locked_until <= now:
            return
        wait = math.ceil((counter.locked_until - now).total_seconds())
        raise RateLimited(LOCKED_DETAIL, code="account_locked", headers={"Retry-After": str(max(wait, 1))})

    async def on_failure(self, session: AsyncSession, *, user: User | None, ip: str | None, factor: str) -> None:
        """Count a failed password or second factor; lock the account past the threshold."""
        if ip is not None:
            await self.limiter.count(self.ip_limits, "login-failures", address_key(ip))
        attempt = session.info.get(_ATTEMPT)
        if attempt is None:  # a check that did not go through before_attempt (e.g. a 2FA code alone)
            if user is None:
                return
            attempt = (self.account_key(user.email), KNOWN if await self._is_known(session, user, ip) else OTHER)
        key, source = attempt
        counter = await self._lock_counter(session, key, source)
        now = self.clock.now()
        memory = timedelta(seconds=self.settings.login_failure_memory_seconds)
        if counter.last_failure_at is not None and now - counter.last_failure_at > memory:
            counter.failures = 0
        counter.failures += 1
        counter.last_failure_at = counter.updated_at = now
        s = self.settings
        seconds = lock_seconds(counter.failures, threshold=s.login_lockout_threshold,
                               base=s.login_lockout_base_seconds, cap=s.login_lockout_max_seconds)
        if seconds:
            counter.locked_until = now + timedelta(seconds=seconds)
            if user is not None:
                record_security_event(session, clock=self.clock, kind=SecurityEventKind.ACCOUNT_LOCKED,
                                      user_id=user.id, ip=ip,
                                      details={"failures": counter.failures, "locked_seconds": seconds,
                                               "locked_until": counter.locked_until.isoformat(),
                                               "factor": factor, "from_known_address": source == KNOWN})
        await self._maybe_purge(session, now)

    async def on_success(self, session: AsyncSession, *, user: User, ip: str | None, user_agent: str | None) -> None:
        """Reset the counter; remember the address, alerting the user when it is new."""
        attempt = session.info.pop(_ATTEMPT, None)
        if attempt is not None:
            await session.execute(delete(LoginFailureCounter).where(
                LoginFailureCounter.account_key == attempt[0], LoginFailureCounter.source == attempt[1]))
        if ip is None:
            return
        now = self.clock.now()
        address = address_key(ip)
        seen = await session.execute(
            update(KnownLoginAddress)
            .where(KnownLoginAddress.user_id == user.id, KnownLoginAddress.address == address)
            .values(last_seen_at=now)
        )
        if seen.rowcount:  # type: ignore[attr-defined]
            return
        first_login = await session.scalar(select(KnownLoginAddress.id).where(KnownLoginAddress.user_id == user.id)
                                           .limit(1)) is None
        inserted = await session.scalar(
            _insert(session, KnownLoginAddress)
            .values(id=new_id(), user_id=user.id, address=address, first_seen_at=now, last_seen_at=now)
            .on_conflict_do_nothing(index_elements=["user_id", "address"])
            .returning(KnownLoginAddress.id)
        )
        if inserted is None or first_login:
            return
        record_security_event(session, clock=self.clock, kind=SecurityEventKind.LOGIN_NEW_IP, user_id=user.id,
                              ip=ip, user_agent=user_agent, details={"address": address})
        context = {"event": NEW_ADDRESS_EVENT, "ip": ip, "user_agent": user_agent,
                   "occurred_at": now.strftime("%Y-%m-%d %H:%M UTC")}
        if user.display_name:
            context["name"] = user.display_name
        await emit_security_alert(session, user_id=user.id, event=NEW_ADDRESS_EVENT, ip=ip, now=now)
        await self.runtime.services["email"].send(session, to=user.email, template="security_alert",
                                                  context=context, user_id=user.id)

    # --- helpers -----------------------------------------------------------------------

    async def _is_known(self, session: AsyncSession, user: User | None, ip: str | None) -> bool:
        if ip is None:
            return False
        user_id = user.id if user is not None else _NOBODY
        found = await session.scalar(select(KnownLoginAddress.id).where(
            KnownLoginAddress.user_id == user_id, KnownLoginAddress.address == address_key(ip)))
        return found is not None

    async def _lock_counter(self, session: AsyncSession, key: str, source: str) -> LoginFailureCounter:
        """The account's counter row, created if missing and locked for this transaction.

        A concurrent success deletes the row while we wait for its lock: then create it again.
        """
        while True:
            await session.execute(
                _insert(session, LoginFailureCounter)
                .values(account_key=key, source=source, failures=0, updated_at=self.clock.now())
                .on_conflict_do_nothing(index_elements=["account_key", "source"])
            )
            counter = await session.get(LoginFailureCounter, (key, source), with_for_update=True,
                                        populate_existing=True)
            if counter is not None:
                return counter

    async def _maybe_purge(self, session: AsyncSession, now: datetime) -> None:
        """Now and then, forget counters that are neither recent nor locked (in this transaction)."""
        mono = self.clock.monotonic()
        if mono - self._last_purge < PURGE_INTERVAL_SECONDS:
            return
        self._last_purge = mono
        horizon = now - timedelta(seconds=self.settings.login_failure_memory_seconds
                                  + self.settings.login_lockout_max_seconds)
        await session.execute(delete(LoginFailureCounter).where(LoginFailureCounter.updated_at < horizon))


def _insert(session: AsyncSession, table: type) -> postgresql.Insert | sqlite.Insert:
    """INSERT with ON CONFLICT for the session's dialect."""
    dialect = session.bind.dialect.name
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
