"""Delivery of a notification on a targeted channel (Telegram, Discord, Slack, Web Push), as a job.

One ``notifications.deliver`` job per (notification, channel), enqueued with the notification.
Each run sends to every destination of the user on that channel that has no ``sent`` attempt
yet, and logs every try in ``notification_attempt``. So delivery is **at least once**, and
deduplicated by us:

* a worker that dies before sending leaves no attempt: the job is re-queued (reaper) and the
  message goes out once;
* a worker that dies after the service accepted but before the log row committed sends it
  again on the next run — one duplicate at most, carrying the same notification id
  (``[#id]`` in chat texts, the Web Push ``Topic``), so the reader (or the service) can tell.

Outcomes: a temporary failure raises, and the job system retries with exponential back-off; a
``429`` raises ``RetryLater`` with the service's ``Retry-After``; our own pace
(``rate_limits.py``) defers without spending an attempt; a permanent failure or the last
attempt's failure logs ``dead`` and dead-letters the job. A destination the service calls gone
(a deleted webhook, an expired push subscription: 404/410, a bot blocked: 403) is removed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.outbound import outbound_client
from tradepilot.jobs.registry import JobContext, PermanentJobError, RetryLater, job_handler
from tradepilot.notifications import constants as c
from tradepilot.notifications.channel_models import NotificationAttempt
from tradepilot.notifications.models import Notification
from tradepilot.notifications.pause import wait_out_maintenance
from tradepilot.notifications.rate_limits import ChannelLimiter
from tradepilot.notifications.senders import DeliveryFailure, chat_text, send_discord, send_slack
from tradepilot.notifications.targets import Target, has_target, remove_target, targets_of
from tradepilot.notifications.telegram import TelegramBot
from tradepilot.notifications.webpush import send_webpush

if TYPE_CHECKING:
    from tradepilot.notifications.channels import Recipient
    from tradepilot.runtime import Runtime

SENT, FAILED, RATE_LIMITED, DEAD, GONE = "sent", "failed", "rate_limited", "dead", "gone"


class TargetedChannel:
    """A push channel whose destinations the user set; its delivery is a ``notifications.deliver`` job."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name

    async def deliver(self, session: AsyncSession, notification: Notification,
                      recipient: Recipient) -> uuid.UUID | None:
        """Enqueue the job in the caller's transaction; None when the user has no destination here."""
        if not await has_target(session, recipient.user_id, self.name):
            return None
        job = await self.runtime.services["jobs"].enqueue(
            session, kind=c.DELIVER_KIND, user_id=recipient.user_id,
            payload={"notification_id": str(notification.id), "channel": self.name},
            max_attempts=self.runtime.settings.notification_delivery_attempts)
        return job.id  # type: ignore[no-any-return]


def limiter_of(runtime: Runtime) -> ChannelLimiter:
    limiter = runtime.services.get("notification_limiter")
    if limiter is None:
        limiter = runtime.services["notification_limiter"] = ChannelLimiter(runtime.clock)
    return limiter  # type: ignore[no-any-return]


async def send_to(runtime: Runtime, target: Target, notification: Notification) -> int:
    """One message to one destination; the service's HTTP status, or DeliveryFailure."""
    if target.channel == c.TELEGRAM:
        await TelegramBot(runtime.settings).send_message(target.address["chat_id"], chat_text(notification))
        return 200
    client = outbound_client(runtime)
    if target.channel == c.DISCORD:
        return await send_discord(client, target.address["url"], notification)
    if target.channel == c.SLACK:
        return await send_slack(client, target.address["url"], notification)
    if target.channel == c.WEBPUSH:
        return await send_webpush(runtime, client, target.address["subscription"], notification)
    raise DeliveryFailure(f"unknown channel {target.channel!r}", permanent=True)


def limit_key(target: Target) -> str:
    return str(target.address.get("chat_id") or target.address.get("url") or target.id)


@dataclass
class _Pass:
    """What one run of the job saw."""

    sent: int = 0
    temporary: list[DeliveryFailure] | None = None
    permanent: list[DeliveryFailure] | None = None
    deferred: float | None = None


async def deliver_notification(ctx: JobContext, notification_id: uuid.UUID, channel: str) -> dict[str, Any]:
    runtime = ctx.runtime
    async with runtime.db.read() as session:
        notification = await session.get(Notification, notification_id)
        if notification is None:
            return {"skipped": "notification deleted"}
        session.expunge(notification)
        targets = await targets_of(runtime, session, notification.user_id, channel)
        done = set(await session.scalars(select(NotificationAttempt.target_id).where(
            NotificationAttempt.notification_id == notification_id, NotificationAttempt.channel == channel,
            NotificationAttempt.outcome == SENT)))
        await session.rollback()
    pending = [t for t in targets if t.id not in done]
    outcome = _Pass(temporary=[], permanent=[])
    limiter = limiter_of(runtime)
    for target in pending:
        wait = limiter.wait_needed(channel, limit_key(target))
        if wait > 0:
            outcome.deferred = max(outcome.deferred or 0.0, wait)
            continue
        limiter.record(channel, limit_key(target))
        await _try(ctx, notification, target, outcome)
    return await _conclude(ctx, notification, channel, pending, outcome)


async def _try(ctx: JobContext, notification: Notification, target: Target, outcome: _Pass) -> None:
    try:
        status = await send_to(ctx.runtime, target, notification)
    except DeliveryFailure as failure:
        kind = GONE if failure.gone else RATE_LIMITED if failure.status_code == 429 else FAILED
        await _log(ctx, notification, target.channel, target, kind, failure.status_code, failure.detail,
                   failure.retry_after)
        if failure.gone:
            async with ctx.runtime.db.transaction() as session:
                await remove_target(session, target.id)
        (outcome.permanent if failure.permanent else outcome.temporary).append(failure)  # type: ignore[union-attr]
        return
    await _log(ctx, notification, target.channel, target, SENT, status, None, None)
    outcome.sent += 1


async def _conclude(ctx: JobContext, notification: Notification, channel: str, pending: list[Target],
                    outcome: _Pass) -> dict[str, Any]:
    temporary, permanent = outcome.temporary or [], outcome.permanent or []
    summary = {"channel": channel, "sent": outcome.sent, "targets": len(pending)}
    if temporary and ctx.is_last_attempt or permanent and not temporary and not outcome.deferred:
        failures = temporary + permanent
        await _log(ctx, notification, channel, None, DEAD, failures[0].status_code,
                   f"dead-lettered after attempt {ctx.attempt}: {failures[0].detail}", None)
        raise PermanentJobError(f"{len(failures)} destination(s) failed: {failures[0].detail}")
    if temporary:
        waits = [f.retry_after for f in temporary if f.retry_after is not None]
        detail = f"{len(temporary)} destination(s) failed: {temporary[0].detail}"
        if waits:
            raise RetryLater(max(waits), detail)
        raise RuntimeError(detail)
    if outcome.deferred:
        raise RetryLater(outcome.deferred, "paced by the channel's rate limit", counts=False)
    return summary


async def _log(ctx: JobContext, notification: Notification, channel: str, target: Target | None, outcome: str,
               status_code: int | None, detail: str | None, retry_after: float | None) -> None:
    now: datetime = ctx.runtime.clock.now()
    async with ctx.runtime.db.transaction() as session:
        session.add(NotificationAttempt(
            notification_id=notification.id, channel=channel,
            target_id=target.id if target else None, job_id=ctx.job_id, attempt=ctx.attempt, outcome=outcome,
            status_code=status_code, detail=(detail or None) and detail[:300], retry_after_seconds=retry_after,
            created_at=now))


@job_handler(c.DELIVER_KIND, timeout_seconds=120)
async def deliver(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    await wait_out_maintenance(ctx.runtime)
    return await deliver_notification(ctx, uuid.UUID(payload["notification_id"]), payload["channel"])
