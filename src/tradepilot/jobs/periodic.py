"""A background loop that is stopped between steps, never in the middle of a transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("tradepilot.jobs")


class Periodic:
    """Runs ``step`` every ``interval`` seconds and whenever woken; ``interval=None``: only when woken."""

    def __init__(self, name: str, step: Callable[[], Awaitable[object]], interval: float | None) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the current step finish (up to ``timeout``), then end the loop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: never loses a cancellation
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self.step()
            except Exception:
                logger.warning("%s failed; will retry", self.name, exc_info=True)
                if self.interval is not None:
                    await asyncio.sleep(self.interval)
