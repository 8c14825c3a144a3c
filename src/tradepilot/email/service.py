"""EmailService: renders a template and enqueues its delivery in the caller's transaction.

Rendering happens here, so a broken template or a missing variable fails the request that
caused it, not a background job later. Delivery (``email.send``, see ``email.delivery``)
goes over SMTP when ``TRADEPILOT_SMTP_HOST`` is set, else to ``<data_dir>/mail-outbox``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.jobs.models import Job

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATES = ("welcome", "verify_email", "password_reset", "security_alert", "two_factor_code", "account_deletion",
             "trade_notification", "alert_triggered", "notification", "performance_report")
SEND_KIND = "email.send"
APP_NAME = "TradePilot"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailRenderer:
    """Jinja2 templates: ``<name>.subject.txt``, ``<name>.txt`` and ``<name>.html`` (autoescaped)."""

    def __init__(self, directory: Path = TEMPLATES_DIR, *, globals_: Mapping[str, Any] | None = None) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
        )
        self.env.globals.update({"app_name": APP_NAME, "public_url": None, **(globals_ or {})})

    def render(self, template: str, context: Mapping[str, Any]) -> RenderedEmail:
        if not template.replace("_", "").isalnum():
            raise ValueError(f"invalid email template name {template!r}")
        try:
            subject = self.env.get_template(f"{template}.subject.txt").render(context)
            text = self.env.get_template(f"{template}.txt").render(context)
            html = self.env.get_template(f"{template}.html").render(context)
        except TemplateNotFound as exc:
            raise ValueError(f"unknown email template {template!r} ({exc.name} is missing)") from None
        return RenderedEmail(subject=" ".join(subject.split()), text=text.strip() + "\n", html=html.strip() + "\n")


def normalise_recipients(to: str | Sequence[str]) -> list[str]:
    """One or more plain addresses; anything that could inject a header is refused."""
    addresses = [to] if isinstance(to, str) else list(to)
    if not addresses:
        raise ValueError("an email needs at least one recipient")
    clean = []
    for raw in addresses:
        value = raw.strip()
        if any(ch in value for ch in "\r\n,<>") or "@" not in value:
            raise ValueError("invalid recipient address")
        try:
            Address(addr_spec=value)
        except (HeaderParseError, ValueError, IndexError):
            raise ValueError("invalid recipient address") from None
        clean.append(value)
    return clean


class EmailService:
    """``runtime.services["email"]``: ``await email.send(session, to=..., template=..., context=...)``."""

    def __init__(self, runtime: Runtime, *, renderer: EmailRenderer | None = None) -> None:
        self.runtime = runtime
        public_url = runtime.settings.public_url or f"http://{runtime.settings.host}:{runtime.settings.port}"
        self.renderer = renderer or EmailRenderer(globals_={"public_url": public_url})

    async def send(self, session: AsyncSession, *, to: str | Sequence[str], template: str,
                   context: Mapping[str, Any], user_id: uuid.UUID | None = None,
                   message_key: str | None = None) -> Job:
        """Render ``template`` and enqueue its delivery; commits with the caller's transaction.

        ``message_key``: the Message-ID's local part (default: the job id), e.g. a notification's id,
        so that a message sent twice after a crash carries the same id."""
        recipients = normalise_recipients(to)
        rendered = self.renderer.render(template, context)
        payload = {"to": recipients, "template": template, "subject": rendered.subject,
                   "text": rendered.text, "html": rendered.html}
        if message_key is not None:
            if not message_key.replace("-", "").isalnum():
                raise ValueError("message_key: letters, digits and '-' only")
            payload["message_key"] = message_key
        jobs = self.runtime.services["jobs"]
        return await jobs.enqueue(session, kind=SEND_KIND, payload=payload, user_id=user_id, max_attempts=8)  # type: ignore[no-any-return]
