"""What else the panic button stops, registered by other domains (strategies' live runs).

Trading does not know strategies; each domain that runs something on a user's behalf
registers a hook, as identity's account-stop hooks do. A hook runs in the panic request's
transaction, before the open orders are cancelled (so nothing it stops places a new one), and
returns how many things it stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

PanicHook = Callable[["Runtime", AsyncSession, uuid.UUID], Awaitable[int]]
PANIC_HOOKS: dict[str, PanicHook] = {}


def panic_hook(name: str) -> Callable[[PanicHook], PanicHook]:
    def register(func: PanicHook) -> PanicHook:
        PANIC_HOOKS[name] = func
        return func

    return register


async def run_panic_hooks(runtime: Runtime, session: AsyncSession, user_id: uuid.UUID) -> dict[str, int]:
    """Every hook, in registration order: name → how many things it stopped."""
    return {name: await hook(runtime, session, user_id) for name, hook in list(PANIC_HOOKS.items())}
