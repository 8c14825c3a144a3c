"""Telegram updates in: answering one update, and long polling (``getUpdates``) under a lease.

With ``TRADEPILOT_TELEGRAM_POLLING=true`` one process (the holder of the lease
``telegram-updates``) long-polls the Bot API; otherwise updates arrive at the webhook
(``POST /api/notifications/telegram/webhook``). Both paths call :func:`answer_update`, and an
update seen twice (a redelivery, both paths) is answered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from tradepilot.core.lease import Lease, lease_manager
from tradepilot.notifications import constants as c
from tradepilot.notifications.senders import DeliveryFailure
from tradepilot.notifications.telegram import TelegramBot
from tradepilot.notifications.telegram_commands import Reply, handle_update

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.notifications.telegram")

POLL_TIMEOUT_SECONDS = 25  # Telegram holds getUpdates this long when there is nothing
ERROR_PAUSE_SECONDS = 5.0
SERVICE_KEY = "telegram_poller"


async def answer_update(runtime: Runtime, update: dict[str, Any]) -> Reply | None:
    """Handle one update and send its reply (a failed reply is logged, the update stays handled)."""
    reply = await handle_update(runtime, update)
    if reply is not None:
        try:
            await TelegramBot(runtime.settings).send_message(reply.chat_id, reply.text)
        except DeliveryFailure as failure:
            logger.warning("telegram reply not sent: %s", failure.detail)
    return reply


class TelegramPoller:
    def __init__(self, runtime: Runtime, *, poll_timeout: int = POLL_TIMEOUT_SECONDS) -> None:
        self.runtime = runtime
        self.bot = TelegramBot(runtime.settings)
        self.poll_timeout = poll_timeout
        self.offset: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            lease_manager(self.runtime).run_while_held(c.TELEGRAM_UPDATES, self._run), name="telegram-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self, lease: Lease) -> None:
        while True:
            try:
                await self.poll_once()
            except DeliveryFailure as failure:
                logger.warning("getUpdates failed: %s", failure.detail)
                await asyncio.sleep(failure.retry_after or ERROR_PAUSE_SECONDS)

    async def poll_once(self) -> int:
        """One getUpdates; confirms what it handled by moving the offset. How many updates came."""
        updates = await self.bot.get_updates(self.offset, self.poll_timeout)
        for update in updates:
            try:
                await answer_update(self.runtime, update)
            except Exception:
                logger.exception("telegram update %s failed", update.get("update_id"))
            update_id = update.get("update_id")
            if isinstance(update_id, int):
                self.offset = max(self.offset or 0, update_id + 1)
        return len(updates)
