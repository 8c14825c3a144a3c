"""The ``email.send`` job: deliver over SMTP (aiosmtplib), or to an outbox folder without SMTP.

Retries are the job system's; the Message-ID is derived from the job id, so a message sent
twice after a crash between delivery and bookkeeping is recognisable as one. The payload
(which may hold a reset link) is erased once the job is final, and the log names only the
recipients and the subject, never the body.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib

from tradepilot.config import Settings
from tradepilot.jobs.registry import JobContext, PermanentJobError, job_handler

logger = logging.getLogger("tradepilot.email")

OUTBOX_DIRNAME = "mail-outbox"


def build_message(settings: Settings, payload: dict[str, Any], *, message_id: str, date: Any) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = payload["subject"]
    message["From"] = settings.email_from
    message["To"] = ", ".join(payload["to"])
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message.set_content(payload["text"])
    message.add_alternative(payload["html"], subtype="html")
    return message


def _message_id(settings: Settings, job_id: uuid.UUID, key: str | None = None) -> str:
    domain = parseaddr(settings.email_from)[1].rpartition("@")[2] or "tradepilot.local"
    return f"<{key or job_id}@{domain}>"


async def _send_smtp(settings: Settings, message: EmailMessage, recipients: list[str]) -> None:
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            message,
            recipients=recipients,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=(password or "") if settings.smtp_username else None,
            use_tls=settings.smtp_tls,
            start_tls=False if settings.smtp_tls else settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise PermanentJobError(f"all recipients refused ({len(exc.recipients)})") from None


def write_outbox(directory: Path, job_id: uuid.UUID, message: EmailMessage) -> Path:
    """Write ``<job id>.eml`` atomically; a retried job overwrites its own file, never duplicates."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{job_id}.eml"
    temporary = directory / f".{job_id}.eml.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(message.as_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return target


@job_handler("email.send", sensitive_payload=True, timeout_seconds=120)
async def send_email(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    settings = ctx.runtime.settings
    recipients: list[str] = list(payload["to"])
    message_id = _message_id(settings, ctx.job_id, payload.get("message_key"))
    message = build_message(settings, payload, message_id=message_id, date=ctx.runtime.clock.now())
    if settings.smtp_host:
        await _send_smtp(settings, message, recipients)
        transport = "smtp"
        logger.info("email sent to %s: %s", ", ".join(recipients), payload["subject"])
    else:
        outbox = Path(settings.data_dir) / OUTBOX_DIRNAME
        await asyncio.to_thread(write_outbox, outbox, ctx.job_id, message)
        transport = "outbox"
        logger.info("email to %s written to %s (SMTP not configured): %s", ", ".join(recipients), outbox,
                    payload["subject"])
    return {"to": recipients, "transport": transport, "message_id": message_id}
