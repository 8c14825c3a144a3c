"""Wires identity into the process: the auth cache (bus-invalidated) and the service."""

from __future__ import annotations

from tradepilot.identity.service import IdentityService
from tradepilot.identity.session_cache import install_session_cache
from tradepilot.runtime import Runtime


async def start_identity(runtime: Runtime) -> None:
    await install_session_cache(runtime)
    runtime.services["identity"] = IdentityService(runtime)
