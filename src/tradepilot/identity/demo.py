"""The demo user that `make run` creates, with a fresh random password printed once."""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy import select

from tradepilot.config import Settings
from tradepilot.identity.models import User
from tradepilot.identity.passwords import PasswordHashing
from tradepilot.runtime import build_runtime
from tradepilot.identity.setup import start_identity


async def ensure_demo_user(settings: Settings, email: str) -> tuple[str, str]:
    """Create the demo user, or give the existing one a new password; return the password."""
    runtime = build_runtime(settings.model_copy(update={"redis_url": None}))
    await start_identity(runtime)
    identity = runtime.services["identity"]
    identity.registration_hooks.clear()  # the demo address is not real: no verification mail
    password = "demo-" + secrets.token_urlsafe(12)
    try:
        async with runtime.db.session() as session:
            user = await session.scalar(select(User).where(User.email == email.lower()))
            if user is None:
                user = await identity.register(session, email=email, password=password)
                user.email_verified_at = runtime.clock.now()
                await session.commit()
            else:
                user.password_hash = await asyncio.to_thread(PasswordHashing(settings).hash, password)
                user.password_changed_at = runtime.clock.now()
                await session.commit()
    finally:
        await runtime.db.dispose()
    return email.lower(), password
