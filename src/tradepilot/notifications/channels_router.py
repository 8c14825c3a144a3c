"""HTTP edge of the push channels: destinations, Telegram linking and webhook, the delivery log."""

from __future__ import annotations

import hmac
import json
import uuid
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response, status
from sqlalchemy import select

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from tradepilot.core.outbound import OutboundError, outbound_client
from tradepilot.core.ownership import ownership_dependency
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import CurrentUser
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.notifications import constants as c
from tradepilot.notifications.channel_models import NotificationAttempt, NotificationTarget
from tradepilot.notifications.channel_schemas import (
    AttemptOut,
    ChannelsOut,
    DeliveriesOut,
    DeliveryOut,
    DeviceIn,
    TargetOut,
    TelegramLinkOut,
    TelegramSettingsIn,
    WebhookIn,
)
from tradepilot.notifications.deps import OwnedNotification, ReadUser
from tradepilot.notifications.models import NotificationDelivery
from tradepilot.notifications.targets import Target, decrypt, describe, save_target, targets_of
from tradepilot.notifications.telegram_commands import new_link_code
from tradepilot.notifications.telegram_updates import answer_update
from tradepilot.notifications.webpush import check_subscription, public_key_of, vapid_of
from tradepilot.runtime import Runtime

router = api_router(prefix="/api/notifications", tags=["notifications"])
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 64 * 1024
MAX_DEVICES = 10  # Web Push subscriptions per user: each is a call to a host the user chose


def target_out(target: Target, row: NotificationTarget) -> TargetOut:
    return TargetOut(id=target.id, channel=target.channel, label=target.label, destination=describe(target),
                     trading_commands=target.trading_commands, created_at=row.created_at)


@ownership_dependency
async def owned_target(target_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> NotificationTarget:
    """The caller's destination; 404 ``channel_target_not_found`` alike for a missing id and another user's."""
    row = await db.get(NotificationTarget, target_id)
    if row is None or row.user_id != principal.id:
        raise NotFound("Channel destination not found.", code="channel_target_not_found")
    return row


OwnedTarget = Annotated[NotificationTarget, Depends(owned_target)]


async def vetted_url(runtime: Runtime, url: str, code: str) -> None:
    """The outbound guard's verdict, now (and again at every send: DNS may change)."""
    try:
        await outbound_client(runtime).vet(url)
    except OutboundError as exc:
        raise Unprocessable(f"This URL cannot be used: {exc}", code=code) from None


@router.get("/channels", response_model=ChannelsOut, summary="Your push destinations and how to add one")
async def list_channels(principal: ReadUser, db: DbSession, runtime: RuntimeDep) -> ChannelsOut:
    rows = {r.id: r for r in (await db.scalars(select(NotificationTarget)
                                               .where(NotificationTarget.user_id == principal.id))).all()}
    targets = await targets_of(runtime, db, principal.id)
    settings = runtime.settings
    return ChannelsOut(targets=[target_out(t, rows[t.id]) for t in targets],
                       telegram_configured=settings.telegram_bot_token is not None,
                       telegram_bot_username=settings.telegram_bot_username,
                       webpush_public_key=public_key_of(vapid_of(runtime)))


@router.post("/channels/telegram/link", status_code=status.HTTP_201_CREATED, response_model=TelegramLinkOut,
             summary="A one-time code that links a Telegram chat",
             responses={409: {"description": "the server has no Telegram bot (telegram_not_configured)"}})
async def telegram_link(principal: ReadUser, db: DbSession, runtime: RuntimeDep) -> TelegramLinkOut:
    """Send `/start <code>` to the bot from a private chat within 15 minutes; the code works once."""
    if runtime.settings.telegram_bot_token is None:
        raise Conflict("Telegram is not configured on this server.", code="telegram_not_configured")
    code, expires_at = await new_link_code(db, principal.id, now=runtime.clock.now())
    await db.commit()
    bot = runtime.settings.telegram_bot_username
    return TelegramLinkOut(code=code, command=f"/start {code}", expires_at=expires_at,
                           link=f"https://t.me/{bot}?start={code}" if bot else None)


@router.put("/channels/telegram", response_model=TargetOut, summary="Allow or forbid trading commands",
            responses={404: {"description": "no linked chat (telegram_not_linked)"}})
async def telegram_settings(body: TelegramSettingsIn, principal: ReadUser, db: DbSession,
                            runtime: RuntimeDep) -> TargetOut:
    """`trading_commands: true` (needs the `trade` scope) lets the linked chat use `/stop`."""
    if body.trading_commands and "trade" not in principal.scopes:
        raise Forbidden("Turning trading commands on needs the 'trade' scope.", code="insufficient_scope")
    row = await db.scalar(select(NotificationTarget).where(NotificationTarget.user_id == principal.id,
                                                           NotificationTarget.channel == c.TELEGRAM))
    if row is None:
        raise NotFound("No Telegram chat is linked.", code="telegram_not_linked")
    row.trading_commands = body.trading_commands
    out = target_out(decrypt(runtime, row), row)
    await db.commit()
    return out


async def _save_webhook(channel: str, body: WebhookIn, principal: ReadUser, db: DbSession,
                        runtime: Runtime) -> TargetOut:
    await vetted_url(runtime, body.url, "webhook_url_refused")
    row = await save_target(runtime, db, user_id=principal.id, channel=channel, address={"url": body.url.strip()},
                            label=body.label, now=runtime.clock.now())
    out = target_out(decrypt(runtime, row), row)
    await db.commit()
    return out


_REFUSED = {422: {"description": "a URL the outbound guard refuses (webhook_url_refused)"}}


@router.put("/channels/discord", response_model=TargetOut, summary="Set your Discord webhook", responses=_REFUSED)
async def set_discord(body: WebhookIn, principal: ReadUser, db: DbSession, runtime: RuntimeDep) -> TargetOut:
    return await _save_webhook(c.DISCORD, body, principal, db, runtime)


@router.put("/channels/slack", response_model=TargetOut, summary="Set your Slack incoming webhook",
            responses=_REFUSED)
async def set_slack(body: WebhookIn, principal: ReadUser, db: DbSession, runtime: RuntimeDep) -> TargetOut:
    return await _save_webhook(c.SLACK, body, principal, db, runtime)


@router.post("/devices", status_code=status.HTTP_201_CREATED, response_model=TargetOut,
             summary="Register a browser for Web Push (register_device_token)",
             responses={422: {"description": "an endpoint the guard refuses (push_endpoint_refused), unusable "
                                             "keys (push_keys_invalid), more than 10 devices (too_many_devices)"}})
async def register_device(body: DeviceIn, principal: ReadUser, db: DbSession, runtime: RuntimeDep) -> TargetOut:
    subscription = {"endpoint": body.endpoint.strip(), "keys": {"p256dh": body.keys.p256dh, "auth": body.keys.auth}}
    try:
        check_subscription(subscription)
    except ValueError as exc:
        raise Unprocessable(f"The subscription keys are unusable: {exc}", code="push_keys_invalid") from None
    await vetted_url(runtime, subscription["endpoint"], "push_endpoint_refused")
    known = {t.address["subscription"]["endpoint"] for t in await targets_of(runtime, db, principal.id, c.WEBPUSH)}
    if subscription["endpoint"] not in known and len(known) >= MAX_DEVICES:
        raise Unprocessable(f"At most {MAX_DEVICES} devices; remove one first.", code="too_many_devices")
    row = await save_target(runtime, db, user_id=principal.id, channel=c.WEBPUSH,
                            address={"subscription": subscription}, label=body.label, now=runtime.clock.now())
    out = target_out(decrypt(runtime, row), row)
    await db.commit()
    return out


@router.delete("/channels/{target_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove a destination (unlink a chat, forget a webhook or a device)",
               responses={404: {"description": "No such destination, or not yours (channel_target_not_found)"}})
async def remove_channel(target: OwnedTarget, principal: ReadUser, db: DbSession) -> Response:
    await db.delete(target)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def delivery_state(job: Job | None) -> str:
    if job is None:
        return "unknown"
    return {JobStatus.SUCCEEDED: "delivered"}.get(job.status, job.status)


@router.get("/{notification_id}/deliveries", response_model=DeliveriesOut,
            summary="How a notification was delivered, channel by channel",
            responses={404: {"description": "No such notification, or not yours (notification_not_found)"}})
async def deliveries(notification: OwnedNotification, principal: ReadUser, db: DbSession) -> DeliveriesOut:
    rows = (await db.scalars(select(NotificationDelivery).where(NotificationDelivery.notification_id == notification.id)
                             .order_by(NotificationDelivery.created_at, NotificationDelivery.channel))).all()
    attempts = sorted((await db.scalars(select(NotificationAttempt)
                                        .where(NotificationAttempt.notification_id == notification.id))).all(),
                      key=lambda a: (a.created_at, a.attempt, a.outcome == "dead"))  # the verdict last
    items = []
    for row in rows:
        job = await db.get(Job, row.job_id) if row.job_id else None
        log = [AttemptOut(at=a.created_at, attempt=a.attempt, outcome=a.outcome, target_id=a.target_id,  # type: ignore[arg-type]
                          status_code=a.status_code, detail=a.detail, retry_after_seconds=a.retry_after_seconds)
               for a in attempts if a.channel == row.channel]
        queued = job is not None and job.status == JobStatus.QUEUED
        items.append(DeliveryOut(channel=row.channel, job_id=row.job_id, state=delivery_state(job),
                                 attempts=job.attempts if job else 0, max_attempts=job.max_attempts if job else 0,
                                 next_attempt_at=job.run_after if queued and job else None,
                                 error=job.error if job else None, log=log))
    return DeliveriesOut(items=items)


@router.post("/telegram/webhook", summary="Telegram's updates (the bot's webhook)", include_in_schema=True,
             responses={401: {"description": "missing or wrong secret token (telegram_secret_invalid)"},
                        404: {"description": "the webhook is not configured"}})
async def telegram_webhook(request: Request, runtime: RuntimeDep,
                           secret: Annotated[str | None, Header(alias=SECRET_HEADER)] = None) -> dict[str, Any]:
    """Checked by the secret token set with `setWebhook` (TRADEPILOT_TELEGRAM_WEBHOOK_SECRET), in constant time."""
    expected = runtime.settings.telegram_webhook_secret
    if expected is None or runtime.settings.telegram_bot_token is None:
        raise NotFound("Not found.", code="not_found")
    if secret is None or not hmac.compare_digest(secret.encode(), expected.get_secret_value().encode()):
        raise Unauthorized("Wrong or missing Telegram secret token.", code="telegram_secret_invalid")
    raw = await request.body()
    if len(raw) > MAX_UPDATE_BYTES:
        raise BadRequest("The update is too large.", code="update_too_large")
    try:
        update = json.loads(raw)
    except ValueError:
        raise BadRequest("The update is not JSON.", code="malformed_json") from None
    if isinstance(update, dict):
        await answer_update(runtime, update)
    return {"ok": True}
