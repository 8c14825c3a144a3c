"""Sending one message to one destination: Discord and Slack webhooks, and what every sender shares.

A sender returns the HTTP status on success and raises :class:`DeliveryFailure` otherwise,
saying whether a retry can help (``permanent``), whether the destination is gone for good
(``gone``: a deleted webhook, an expired push subscription) and how long the service asked us
to wait (``retry_after``, from ``Retry-After`` or the service's own JSON). Webhook URLs are
user-supplied, so these calls go through the outbound guard.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from tradepilot.core.outbound import OutboundClient, OutboundError, OutboundResponse
from tradepilot.notifications.models import Notification

DISCORD_MAX_CHARS = 2000
SLACK_MAX_CHARS = 3000
GONE_STATUSES = frozenset({404, 410})


class DeliveryFailure(Exception):
    def __init__(self, detail: str, *, status_code: int | None = None, retry_after: float | None = None,
                 permanent: bool = False, gone: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.retry_after = retry_after
        self.permanent = permanent or gone
        self.gone = gone


def chat_text(notification: Notification, limit: int = 4000) -> str:
    """The text of a chat message; ``[#<id>]`` lets the reader recognise a redelivered one."""
    tag = f"[#{notification.id}]"
    text = f"{notification.title}\n\n{notification.body}" if notification.body != notification.title \
        else notification.title
    room = limit - len(tag) - 2
    if len(text) > room:
        text = text[: room - 1] + "…"
    return f"{text}\n\n{tag}"


def retry_after_of(headers: Any, body_seconds: Any = None) -> float | None:
    """Seconds to wait: the service's JSON figure (Discord's, more precise) or ``Retry-After``."""
    if isinstance(body_seconds, int | float) and body_seconds >= 0:
        return float(body_seconds)
    raw = headers.get("retry-after") if headers is not None else None
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def failure_of(response: OutboundResponse, service: str) -> DeliveryFailure:
    """What a non-2xx answer of a webhook or push service means for a retry."""
    status = response.status_code
    if status == 429:
        body = _json_or_none(response)
        seconds = body.get("retry_after") if isinstance(body, dict) else None
        return DeliveryFailure(f"{service} rate limited", status_code=status,
                               retry_after=retry_after_of(response.headers, seconds))
    if status in GONE_STATUSES:
        return DeliveryFailure(f"{service} says the destination is gone (HTTP {status})", status_code=status,
                               gone=True)
    if 400 <= status < 500:
        return DeliveryFailure(f"{service} refused the message (HTTP {status})", status_code=status, permanent=True)
    return DeliveryFailure(f"{service} failed (HTTP {status})", status_code=status,
                           retry_after=retry_after_of(response.headers) if status == 503 else None)


def _json_or_none(response: OutboundResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


async def guarded_post(client: OutboundClient, url: str, service: str, **kwargs: Any) -> int:
    try:
        response = await client.request("POST", url, **kwargs)
    except OutboundError as exc:
        raise DeliveryFailure(f"{exc.code}: {exc}", permanent=exc.permanent) from None
    if 200 <= response.status_code < 300:
        return response.status_code
    raise failure_of(response, service)


async def send_discord(client: OutboundClient, url: str, notification: Notification) -> int:
    """Discord execute-webhook: plain content, mentions disabled (a title must not ping @everyone)."""
    body = {"content": chat_text(notification, DISCORD_MAX_CHARS), "allowed_mentions": {"parse": []}}
    return await guarded_post(client, url, "Discord", json=body)


async def send_slack(client: OutboundClient, url: str, notification: Notification) -> int:
    """Slack incoming webhook: ``text`` as plain text (mrkdwn off, so a title cannot inject links)."""
    body = {"text": chat_text(notification, SLACK_MAX_CHARS), "mrkdwn": False}
    return await guarded_post(client, url, "Slack", json=body)
