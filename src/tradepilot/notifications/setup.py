"""Wires the notification centre into a process: the service, the outbox consumer and, when
configured, Telegram long polling."""

from __future__ import annotations

from tradepilot.notifications.consumer import SERVICE_KEY as CONSUMER_KEY
from tradepilot.notifications.consumer import notifier_of
from tradepilot.notifications.service import notifications_of
from tradepilot.notifications.telegram_updates import SERVICE_KEY as POLLER_KEY
from tradepilot.notifications.telegram_updates import TelegramPoller
from tradepilot.runtime import Runtime


async def start_notifications(runtime: Runtime) -> None:
    notifications_of(runtime)
    if runtime.settings.notifications_consumer_enabled:
        await notifier_of(runtime).start()
    settings = runtime.settings
    if settings.telegram_polling and settings.telegram_bot_token is not None:
        poller = runtime.services[POLLER_KEY] = TelegramPoller(runtime)
        await poller.start()


async def stop_notifications(runtime: Runtime) -> None:
    poller = runtime.services.pop(POLLER_KEY, None)
    if poller is not None:
        await poller.stop()
    notifier = runtime.services.pop(CONSUMER_KEY, None)
    if notifier is not None:
        await notifier.stop()


async def pause_notifications(runtime: Runtime) -> bool:
    """Maintenance mode: stop this process's outbox consumer and Telegram polling (they write
    from no request); whether any was running, so the maintenance switch knows to resume."""
    running = any(runtime.services.get(key) is not None for key in (CONSUMER_KEY, POLLER_KEY))
    await stop_notifications(runtime)
    return running


async def resume_notifications(runtime: Runtime) -> None:
    """After maintenance: start again on the (possibly restored) database, from its cursor."""
    await start_notifications(runtime)
