"""Wires the notification centre into a process: the service and the outbox consumer."""

from __future__ import annotations

from tradepilot.notifications.consumer import SERVICE_KEY as CONSUMER_KEY
from tradepilot.notifications.consumer import notifier_of
from tradepilot.notifications.service import notifications_of
from tradepilot.runtime import Runtime


async def start_notifications(runtime: Runtime) -> None:
    notifications_of(runtime)
    if runtime.settings.notifications_consumer_enabled:
        await notifier_of(runtime).start()


async def stop_notifications(runtime: Runtime) -> None:
    notifier = runtime.services.pop(CONSUMER_KEY, None)
    if notifier is not None:
        await notifier.stop()
