"""The transport: taskiq carries job ids from dispatchers to the processes that run jobs.

Embedded (no Redis): taskiq's ``InMemoryBroker`` runs each delivery in this process.
With Redis: a ``RedisStreamBroker`` on this deployment's stream (``<prefix>jobs``); its
consumer group spreads deliveries over the ``tradepilot worker`` processes and redelivers
unacknowledged ones. A delivery is only a hint; the job's row decides what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from taskiq import AsyncBroker, InMemoryBroker
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.worker import JobExecutor

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.jobs")

TASK_NAME = "tradepilot.jobs.run"
CONSUMER_GROUP = "tradepilot-workers"
STREAM_MAXLEN = 100_000  # approximate cap; a trimmed delivery is re-sent from the database
REDELIVER_AFTER_MS = 300_000  # an unacknowledged delivery goes to another worker after 5 min


class Transport:
    """Sends job ids; when this process runs jobs, also receives them into the executor."""

    def __init__(self, runtime: Runtime, config: JobsConfig, executor: JobExecutor | None) -> None:
        self.runtime = runtime
        self.config = config
        self.executor = executor
        self.broker = self._make_broker()
        executor_ = executor

        async def run_job(job_id: str) -> None:
            if executor_ is None:
                raise RuntimeError("this process does not run jobs")
            await executor_.run(job_id)

        self.broker.register_task(run_job, task_name=TASK_NAME)
        self._task = self.broker.find_task(TASK_NAME)
        self._finish = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    @property
    def in_memory(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    def _make_broker(self) -> AsyncBroker:
        settings = self.runtime.settings
        if not settings.redis_url:
            return InMemoryBroker(max_async_tasks=self.config.concurrency, propagate_exceptions=False)
        from taskiq_redis import RedisStreamBroker

        worker_id = self.executor.worker_id if self.executor else "client"
        return RedisStreamBroker(
            settings.redis_url,
            queue_name=self.runtime.key("jobs"),
            consumer_group_name=CONSUMER_GROUP,
            consumer_name=worker_id,
            consumer_id="0",  # a group created after the first jobs were sent still gets them
            maxlen=STREAM_MAXLEN,
            xread_block=1000,
            xread_count=self.config.concurrency,
            idle_timeout=REDELIVER_AFTER_MS,
            unacknowledged_lock_timeout=30,  # a worker killed while holding it must not block the rest
        )

    async def start(self) -> None:
        self.broker.is_worker_process = self.executor is not None
        await self.broker.startup()
        if self.executor is not None and not self.in_memory:
            receiver = Receiver(
                self.broker,
                max_async_tasks=self.config.concurrency,
                propagate_exceptions=False,
                run_startup=False,
                ack_type=AcknowledgeType.WHEN_EXECUTED,
            )
            self._listener = asyncio.create_task(receiver.listen(self._finish), name="jobs-receiver")

    async def send(self, job_id: str) -> None:
        assert self._task is not None
        await self._task.kiq(job_id)

    async def wait_in_flight(self) -> None:
        """Wait for in-process deliveries (embedded mode) to finish; tests use this."""
        if isinstance(self.broker, InMemoryBroker):
            while self.broker._running_tasks:
                await asyncio.wait(list(self.broker._running_tasks))
                await asyncio.sleep(0)  # let the done-callbacks remove finished tasks

    async def stop(self) -> None:
        """Stop receiving, let the executor wind down, then close the broker."""
        self._finish.set()
        if self.executor is not None:
            await self.executor.stop(self.config.shutdown_grace_seconds)
        if self._listener is not None:
            try:
                await asyncio.wait_for(self._listener, timeout=self.config.shutdown_grace_seconds + 5)
            except (TimeoutError, Exception):
                logger.warning("job receiver did not stop cleanly", exc_info=True)
            self._listener = None
        if isinstance(self.broker, InMemoryBroker):
            with contextlib.suppress(Exception):
                await self.wait_in_flight()
        await _quietly(self.broker.shutdown())


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        logger.warning("job broker shutdown failed", exc_info=True)
