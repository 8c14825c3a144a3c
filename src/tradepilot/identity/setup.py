"""Wires identity into the process: the auth cache (bus-invalidated) and the service."""

from __future__ import annotations

from tradepilot.identity import deletion  # noqa: F401  (the purge job and its hourly schedule)
from tradepilot.identity import recovery
from tradepilot.identity.guard import LoginGuard
from tradepilot.identity.ratelimit import install_rate_limiter
from tradepilot.identity.service import IdentityService
from tradepilot.identity.session_cache import install_session_cache
from tradepilot.identity.twofactor import SecondFactor
from tradepilot.runtime import Runtime


async def start_identity(runtime: Runtime) -> None:
    await install_session_cache(runtime)
    identity = IdentityService(runtime)
    runtime.services["identity"] = identity
    runtime.services["second_factor"] = SecondFactor(runtime)
    await install_rate_limiter(runtime)
    runtime.services["login_guard"] = LoginGuard(runtime)
    # the verification mail is enqueued in the registration's own transaction
    identity.registration_hooks.append(lambda session, user: recovery.send_verification(identity, session, user=user))
