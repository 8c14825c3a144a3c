"""Security alerts also reach the notification centre.

Identity mails a security alert itself (password changed or reset, two-factor turned on or
off, a recovery code used, a sign-in from a new address); this adds the same alert as an
outbox event ``security.alert`` on the user's ``security`` topic, in the same transaction. The
notification consumer makes a ``security`` notification of it (in-app by default, never held
by quiet hours) on the channels the user chose — Telegram, say — without identity knowing them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit

TOPIC_KIND = "security"
SECURITY_ALERT = "security.alert"


async def emit_security_alert(session: AsyncSession, *, user_id: uuid.UUID, event: str, ip: str | None,
                              now: datetime) -> None:
    where = f" from {ip}" if ip else ""
    body = (f"{event} on {now:%Y-%m-%d %H:%M} UTC{where}. If this was not you, reset your password and "
            "sign out your other sessions.")
    await emit(session, topic=Topics.user(user_id, TOPIC_KIND), type=SECURITY_ALERT, user_id=user_id,
               payload={"title": f"Security alert: {event}"[:200], "body": body, "event": event, "ip": ip})
