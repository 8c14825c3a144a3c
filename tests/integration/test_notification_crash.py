"""A real ``tradepilot worker`` process killed (SIGKILL) after Discord accepted a notification but
before the worker heard back: the next worker sends it once more, with the same notification id,
and never a third time."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from tests.fakes.notify_servers import TOKEN, NotifyServers
from tests.integration.jobs_support import (
    TEST_CONFIG,
    jobs_of,
    load_job,
    settings_env,
    spawn,
    start_runtime_with_jobs,
    stop_runtime_with_jobs,
    wait_until,
)
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.identity.models import User
from tradepilot.jobs.models import JobStatus
from tradepilot.notifications import constants as c
from tradepilot.notifications.channel_models import NotificationAttempt
from tradepilot.notifications.models import NotificationDelivery
from tradepilot.notifications.service import notifications_of
from tradepilot.notifications.settings import save_preferences
from tradepilot.notifications.sources import Draft
from tradepilot.notifications.targets import save_target
from tradepilot.runtime import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # starts a Python process

WORKER = ["-m", "tradepilot", "worker"]


async def _user_with_discord(runtime: Runtime, url: str) -> User:
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        user = User(email=f"crash-{uuid.uuid4().hex[:8]}@example.com", password_hash="x", created_at=now,
                    updated_at=now, password_changed_at=now)
        session.add(user)
        await session.flush()
        await save_target(runtime, session, user_id=user.id, channel=c.DISCORD, address={"url": url}, label=None,
                          now=now)
        await save_preferences(session, user.id, channels={c.ALERTS: [c.IN_APP, c.DISCORD]}, quiet=None, now=now)
    return user


async def test_a_killed_worker_after_the_remote_accepted_sends_one_duplicate(settings: Settings,
                                                                            tmp_path: Path) -> None:
    servers = await NotifyServers().start()
    settings = settings.model_copy(update={"data_dir": tmp_path, "telegram_bot_token": SecretStr(TOKEN),
                                           "outbound_allowed_hosts": [f"127.0.0.1:{servers.port}"]})
    recorder = await start_runtime_with_jobs(settings, execute=False)  # records jobs, runs none
    accepted, never = asyncio.Event(), asyncio.Event()

    async def stall_first(key: str) -> None:  # Discord has the message; the worker never hears back
        if not accepted.is_set():
            accepted.set()
            await never.wait()
    servers.after_accept = stall_first
    env = {**settings_env(settings), "TRADEPILOT_OUTBOUND_ALLOWED_HOSTS": f"127.0.0.1:{servers.port}"}
    log = tmp_path / "worker.log"
    proc = spawn(WORKER, env, log)
    runner: Runtime | None = None
    try:
        user = await _user_with_discord(recorder, servers.discord_url("kill"))
        async with recorder.db.transaction() as session:
            row = await notifications_of(recorder).create(session, user=await session.get(User, user.id),  # type: ignore[arg-type]
                                                          draft=Draft(c.ALERTS, "Stop hit", "BTC/USDT stop at 61000"),
                                                          now=recorder.clock.now())
            assert row is not None
            nid = row.id
        async with recorder.db.session() as session:
            job_id = await session.scalar(select(NotificationDelivery.job_id)
                                          .where(NotificationDelivery.notification_id == nid))
        assert job_id is not None
        try:
            await asyncio.wait_for(accepted.wait(), timeout=120)
        except TimeoutError:
            raise AssertionError(f"the worker never sent; its log: {log.read_text()[-3000:]}") from None
        os.kill(proc.pid, signal.SIGKILL)  # dies holding the accepted request
        await asyncio.to_thread(proc.wait, 30)
        never.set()
        job = await load_job(recorder, job_id)
        assert job.status == JobStatus.RUNNING and f":{proc.pid}:" in str(job.worker_id)  # nobody knows yet

        later = datetime.now(UTC) + timedelta(seconds=TEST_CONFIG.heartbeat_timeout_seconds + 5)
        runner = await start_runtime_with_jobs(settings, clock=TestClock(later))
        reaper = jobs_of(runner).reaper
        assert reaper is not None
        await reaper.run_once()
        await jobs_of(runner).drain()

        async def finished() -> bool:
            return (await load_job(runner, job_id)).status == JobStatus.SUCCEEDED  # type: ignore[arg-type]
        await wait_until(finished, timeout=60)
        received = servers.received["discord:kill"]
        assert len(received) == 2  # the accepted one and one duplicate…
        assert all(f"[#{nid}]" in r.body["content"] for r in received)  # …with the same notification id
        async with runner.db.session() as session:
            outcomes = list(await session.scalars(select(NotificationAttempt.outcome)
                                                  .where(NotificationAttempt.notification_id == nid)))
        assert outcomes == ["sent"]
    finally:
        if proc.poll() is None:
            proc.kill()
        if runner is not None:
            await stop_runtime_with_jobs(runner)
        await stop_runtime_with_jobs(recorder)
        await servers.stop()
