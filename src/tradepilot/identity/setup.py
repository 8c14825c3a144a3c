"""Wires identity into the process: the auth cache (bus-invalidated) and the service."""

from __future__ import annotations

from tradepilot.identity import recovery
from tradepilot.identity.service import IdentityService
from tradepilot.identity.session_cache import install_session_cache
from tradepilot.runtime import Runtime


async def start_identity(runtime: Runtime) -> None:
    await install_session_cache(runtime)
    identity = IdentityService(runtime)
    runtime.services["identity"] = identity
    # the verification mail is enqueued in the registration's own transaction
    identity.registration_hooks.append(lambda session, user: recovery.send_verification(identity, session, user=user))
