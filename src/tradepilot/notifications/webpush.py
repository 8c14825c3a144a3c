"""Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291).

pywebpush encrypts the payload for the subscription's keys and py-vapid signs the JWT; the
request itself goes through the outbound guard (a push endpoint is a URL the browser — so the
user — supplied). ``Topic`` carries the notification id: a push service replaces an undelivered
message with the same topic, and the app can drop a redelivered one.

The VAPID key is ``TRADEPILOT_WEBPUSH_VAPID_PRIVATE_KEY`` (PEM, or the raw key in base64url),
else ``<data_dir>/webpush_vapid_private.pem``, generated on first use (0600). Browsers subscribe
with its public key (``GET /api/notifications/channels`` → ``webpush_public_key``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from py_vapid.utils import b64urlencode
from pywebpush import WebPusher, WebPushException

from tradepilot.core.outbound import OutboundClient
from tradepilot.notifications.models import Notification
from tradepilot.notifications.senders import DeliveryFailure, guarded_post

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

VAPID_FILE = "webpush_vapid_private.pem"
TTL_SECONDS = 24 * 3600  # a phone offline for a day still gets it
JWT_LIFETIME_SECONDS = 12 * 3600  # RFC 8292: at most 24 h
MAX_BODY_CHARS = 1000  # the encrypted record must stay under ~4 KB


def vapid_of(runtime: Runtime) -> Vapid02:
    """The VAPID key of this deployment (``runtime.services["webpush_vapid"]``)."""
    vapid = runtime.services.get("webpush_vapid")
    if vapid is None:
        vapid = runtime.services["webpush_vapid"] = _load_vapid(runtime)
    return vapid  # type: ignore[no-any-return]


def _load_vapid(runtime: Runtime) -> Vapid02:
    configured = runtime.settings.webpush_vapid_private_key
    if configured is not None:
        raw = configured.get_secret_value().strip()
        return Vapid02.from_pem(raw.encode()) if raw.startswith("-----") else Vapid02.from_raw(raw.encode())
    path = Path(runtime.settings.data_dir) / VAPID_FILE
    if path.exists():
        return Vapid02.from_pem(path.read_bytes())
    vapid = Vapid02()
    vapid.generate_keys()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(vapid.private_pem())
    os.replace(temporary, path)
    return vapid


def public_key_of(vapid: Vapid02) -> str:
    """The ``applicationServerKey`` a browser subscribes with (uncompressed P-256 point, base64url)."""
    point = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64urlencode(point)  # type: ignore[no-any-return]


def push_payload(notification: Notification) -> dict[str, Any]:
    body = notification.body if len(notification.body) <= MAX_BODY_CHARS else notification.body[:MAX_BODY_CHARS - 1] + "…"
    return {"id": str(notification.id), "category": notification.category, "title": notification.title, "body": body}


def check_subscription(subscription: dict[str, Any]) -> None:
    """Raise ValueError unless the keys can encrypt a message (pywebpush's own checks)."""
    try:
        WebPusher(subscription)
    except (WebPushException, ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


async def send_webpush(runtime: Runtime, client: OutboundClient, subscription: dict[str, Any],
                       notification: Notification) -> int:
    """Encrypt, sign and POST one push; 201 (or any 2xx) on success."""
    plaintext = json.dumps(push_payload(notification)).encode()
    try:
        body = WebPusher(subscription).encode(plaintext, "aes128gcm")["body"]
    except (WebPushException, ValueError, TypeError) as exc:
        raise DeliveryFailure(f"unusable subscription keys: {exc}", permanent=True, gone=True) from None
    endpoint = str(subscription["endpoint"])
    parts = urlsplit(endpoint)
    claims = {"aud": f"{parts.scheme}://{parts.netloc}", "sub": runtime.settings.webpush_vapid_subject,
              "exp": int(time.time()) + JWT_LIFETIME_SECONDS}  # checked by the push service: wall time
    headers = {**vapid_of(runtime).sign(claims), "Content-Encoding": "aes128gcm",
               "Content-Type": "application/octet-stream", "TTL": str(TTL_SECONDS),
               "Topic": notification.id.hex, "Urgency": "high" if notification.category == "security" else "normal"}
    return await guarded_post(client, endpoint, "the push service", headers=headers, content=body)
