"""Wiring of the outbox relay into the process lifecycle (called from the app's lifespan)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradepilot.core.lease import close_lease_managers
from tradepilot.core.outbox import OutboxRelay

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

SERVICE_KEY = "outbox"


async def start_outbox(runtime: Runtime) -> OutboxRelay:
    """Start this process's relay; it relays only while it holds the ``outbox-relay`` lease."""
    relay = runtime.services.get(SERVICE_KEY)
    if relay is None:
        relay = OutboxRelay(runtime)
        runtime.services[SERVICE_KEY] = relay
    await relay.start()
    return relay


async def stop_outbox(runtime: Runtime) -> None:
    """Stop the relay (releasing its lease), then close the runtime's lease managers.

    Closing the lease managers here is interim: it belongs at the very end of ``stop_runtime``
    (after every lease user has stopped); until then ``stop_outbox`` is the last lease user
    to stop. Closing twice is harmless.
    """
    relay: OutboxRelay | None = runtime.services.pop(SERVICE_KEY, None)
    if relay is not None:
        await relay.stop()
    await close_lease_managers(runtime)


def after_commit_wake(runtime: Runtime) -> None:
    """Ask the relay to run now. Rarely needed: ``emit`` already wakes it when its transaction
    commits (through a session ``after_commit`` hook); use this after writing outbox rows by
    other means."""
    relay: OutboxRelay | None = runtime.services.get(SERVICE_KEY)
    if relay is not None:
        relay.wake()
