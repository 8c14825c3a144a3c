"""Wires the job system into a process: ``runtime.services["jobs"]`` is a ``JobsService``.

Which parts run where:

=====================  ==========  ===========  ======  ==========  =========
process                transport   executes     reaper  scheduler   dispatcher
=====================  ==========  ===========  ======  ==========  =========
embedded (no Redis)    in-memory   yes          yes     yes         polls
web with Redis         Redis       if inprocess if so   if so       on wake
``tradepilot worker``  Redis/none  yes          yes     yes         polls
=====================  ==========  ===========  ======  ==========  =========

A web process without Redis whose ``jobs_inprocess`` is false only records jobs; a
``tradepilot worker`` sharing its database runs them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.jobs import service
from tradepilot.jobs.broker import Transport
from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.dispatcher import Dispatcher
from tradepilot.jobs.models import Job
from tradepilot.jobs.reaper import Reaper
from tradepilot.jobs.registry import load_handler_modules
from tradepilot.jobs.scheduler import Scheduler, ScheduleSpec
from tradepilot.jobs.worker import JobExecutor

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.jobs")

_WAKE_HOOK = "tradepilot.jobs.wake_hook"


class JobsService:
    """The job system of one process: enqueue, look up, cancel; runs jobs if ``executes``."""

    def __init__(self, runtime: Runtime, config: JobsConfig, *, execute: bool,
                 schedules: Iterable[ScheduleSpec] | None = None) -> None:
        self.runtime = runtime
        self.config = config
        self.executes = execute
        self.executor = JobExecutor(runtime, config, on_requeue=self.wake) if execute else None
        has_transport = execute or bool(runtime.settings.redis_url)
        self.transport = Transport(runtime, config, self.executor) if has_transport else None
        self.dispatcher = (Dispatcher(runtime, config, self.transport.send, poll=execute)
                           if self.transport is not None else None)
        self.reaper = Reaper(runtime, config, self.wake) if execute else None
        self.scheduler = Scheduler(runtime, config, specs=schedules, on_fired=self.wake) if execute else None

    @property
    def worker_id(self) -> str | None:
        return self.executor.worker_id if self.executor else None

    async def enqueue(self, session: AsyncSession, *, kind: str, payload: dict[str, Any],
                      user_id: uuid.UUID | None = None, max_attempts: int = 5,
                      run_after: datetime | None = None) -> Job:
        """Add a job in the caller's transaction; it is dispatched as soon as that commits."""
        job = await service.enqueue(session, kind=kind, payload=payload, user_id=user_id,
                                    max_attempts=max_attempts, run_after=run_after, clock=self.runtime.clock)
        self._wake_after_commit(session)
        return job

    async def get(self, session: AsyncSession, job_id: uuid.UUID) -> Job | None:
        return await service.get_job(session, job_id=job_id)

    async def cancel(self, session: AsyncSession, job: Job) -> Job:
        return await service.cancel_job(session, job=job, clock=self.runtime.clock)

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def _wake_after_commit(self, session: AsyncSession) -> None:
        sync_session = session.sync_session
        if sync_session.info.get(_WAKE_HOOK):
            return
        sync_session.info[_WAKE_HOOK] = True
        event.listen(sync_session, "after_commit", lambda _s: self.wake())

    async def start(self) -> None:
        if self.transport is not None:
            await self.transport.start()
        if self.scheduler is not None:
            await self.scheduler.start()
        if self.reaper is not None:
            await self.reaper.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()
        logger.info("jobs started", extra={"executes": self.executes, "worker": self.worker_id,
                                           "transport": "none" if self.transport is None else
                                           "memory" if self.transport.in_memory else "redis"})

    async def stop(self) -> None:
        for part in (self.dispatcher, self.scheduler, self.reaper):
            if part is not None:
                await part.stop()
        if self.transport is not None:
            await self.transport.stop()

    async def drain(self, timeout: float = 120.0) -> None:
        """Run every due job in this process and wait until none is left (embedded mode)."""
        if self.dispatcher is None or self.transport is None or not self.transport.in_memory:
            raise RuntimeError("drain() needs the in-process transport")
        async with asyncio.timeout(timeout):
            while True:
                sent = await self.dispatcher.dispatch_due()
                await self.transport.wait_in_flight()
                if sent == 0 and (self.executor is None or self.executor.running == 0):
                    return


async def start_jobs(runtime: Runtime, *, execute: bool | None = None, config: JobsConfig | None = None,
                     handler_modules: Iterable[str] = (),
                     schedules: Iterable[ScheduleSpec] | None = None) -> JobsService:
    """Start the job system (and the email service, which sends through it)."""
    from tradepilot.email.service import EmailService

    load_handler_modules(handler_modules)
    config = config or JobsConfig.from_settings(runtime.settings)
    if execute is None:
        execute = config.inprocess if config.inprocess is not None else not runtime.settings.redis_url
    jobs = JobsService(runtime, config, execute=execute, schedules=schedules)
    runtime.services["jobs"] = jobs
    runtime.services.setdefault("email", EmailService(runtime))
    await jobs.start()
    return jobs


async def stop_jobs(runtime: Runtime) -> None:
    jobs: JobsService | None = runtime.services.pop("jobs", None)
    if jobs is not None:
        await jobs.stop()
