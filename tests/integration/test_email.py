"""EmailService through the job queue: a real SMTP server (aiosmtpd), and the outbox fallback."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from tests.integration.jobs_support import (
    jobs_of,
    load_job,
    start_runtime_with_jobs,
    stop_runtime_with_jobs,
)
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.email.service import EmailService
from tradepilot.jobs.models import JobStatus
from tradepilot.jobs.service import ERASED_PAYLOAD
from tradepilot.runtime import Runtime

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

RESET_URL = "https://tradepilot.example/reset?token=very-secret-reset-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it receives; addresses in ``refuse`` get a 550."""

    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        if isinstance(auth_data, LoginPassword):
            login = (auth_data.login.decode(), auth_data.password.decode())
            self.logins.append(login)
            if login == ("mailer", "s3cret-pass"):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, auth_required=True,
                            auth_require_tls=False, authenticator=mailbox.authenticate)
    controller.start()
    yield mailbox, port
    controller.stop()


def _smtp_settings(settings: Settings, port: int, tmp_path: Path) -> Settings:
    return settings.model_copy(update={
        "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False, "smtp_tls": False,
        "smtp_username": "mailer", "smtp_password": SecretStr("s3cret-pass"), "smtp_timeout_seconds": 5.0,
        "email_from": "TradePilot <no-reply@tradepilot.example>", "data_dir": tmp_path,
    })


@pytest.fixture
async def smtp_rt(settings: Settings, clock: TestClock, smtp: tuple[Mailbox, int], tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = await start_runtime_with_jobs(_smtp_settings(settings, smtp[1], tmp_path), clock=clock)
    yield runtime
    await stop_runtime_with_jobs(runtime)


@pytest.fixture
async def outbox_rt(settings: Settings, clock: TestClock, tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = await start_runtime_with_jobs(settings.model_copy(update={"data_dir": tmp_path}), clock=clock)
    yield runtime
    await stop_runtime_with_jobs(runtime)


async def _send(runtime: Runtime, to: str | list[str], template: str, context: dict[str, Any]):  # type: ignore[no-untyped-def]
    service: EmailService = runtime.services["email"]
    async with runtime.db.transaction() as session:
        job = await service.send(session, to=to, template=template, context=context)
    await jobs_of(runtime).drain()
    return await load_job(runtime, job.id)


def _parts(raw: bytes) -> tuple[email.message.EmailMessage, str, str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return message, text.get_content(), html.get_content()


async def test_email_is_delivered_over_smtp(smtp_rt: Runtime, smtp: tuple[Mailbox, int]) -> None:
    mailbox, _ = smtp
    job = await _send(smtp_rt, ["ada@example.com", "bob@example.com"], "password_reset",
                      {"name": "<b>Ada</b>", "reset_url": RESET_URL, "expires_minutes": 30})
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result is not None and job.result["transport"] == "smtp"
    assert job.payload == ERASED_PAYLOAD  # the reset link does not stay in the database
    assert mailbox.logins == [("mailer", "s3cret-pass")]
    [envelope] = mailbox.messages
    assert envelope.mail_from == "no-reply@tradepilot.example"
    assert envelope.rcpt_tos == ["ada@example.com", "bob@example.com"]
    message, text, html = _parts(envelope.content)
    assert message["Subject"] == "Reset your TradePilot password"
    assert message["To"] == "ada@example.com, bob@example.com"
    assert message["Message-ID"] == f"<{job.id}@tradepilot.example>"
    assert RESET_URL in text and "Hello <b>Ada</b>," in text and "30 minutes" in text
    assert "Hello &lt;b&gt;Ada&lt;/b&gt;," in html and "<b>Ada</b>" not in html  # HTML is autoescaped
    assert 'href="https://tradepilot.example/reset?token=very-secret-reset-token"' in html
    assert "<!DOCTYPE html>" in html  # the shared layout


async def test_a_refused_recipient_is_not_retried(smtp_rt: Runtime, smtp: tuple[Mailbox, int]) -> None:
    smtp[0].refuse.add("nobody@example.com")
    job = await _send(smtp_rt, "nobody@example.com", "welcome", {})
    assert job.status == JobStatus.DEAD and job.attempts == 1
    assert job.error == "PermanentJobError: all recipients refused (1)"


async def test_an_unreachable_smtp_server_is_retried(settings: Settings, clock: TestClock, tmp_path: Path) -> None:
    runtime = await start_runtime_with_jobs(_smtp_settings(settings, _free_port(), tmp_path), clock=clock)
    try:
        job = await _send(runtime, "ada@example.com", "welcome", {"name": "Ada"})
        assert job.status == JobStatus.QUEUED and job.attempts == 1 and job.max_attempts == 8
        assert job.error is not None and job.error.startswith("SMTPConnect")
        assert job.run_after > clock.now()
        assert "s3cret" not in job.error
    finally:
        await stop_runtime_with_jobs(runtime)


async def test_without_smtp_mail_goes_to_the_outbox_and_the_log(
    outbox_rt: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tradepilot.email")
    job = await _send(outbox_rt, "ada@example.com", "password_reset", {"reset_url": RESET_URL})
    assert job.status == JobStatus.SUCCEEDED and job.result is not None
    assert job.result["transport"] == "outbox"
    files = list((tmp_path / "mail-outbox").glob("*.eml"))
    assert [f.name for f in files] == [f"{job.id}.eml"]
    assert files[0].stat().st_mode & 0o077 == 0  # readable by the owner only: it holds the link
    message, text, html = _parts(files[0].read_bytes())
    assert message["To"] == "ada@example.com" and message["Subject"] == "Reset your TradePilot password"
    assert RESET_URL in text and "Hello there," in text and "Choose a new password" in html
    lines = [r.getMessage() for r in caplog.records if r.name == "tradepilot.email"]
    assert len(lines) == 1
    assert "ada@example.com" in lines[0] and "Reset your TradePilot password" in lines[0]
    assert "token" not in lines[0]  # never the body


async def test_invalid_input_fails_the_caller_not_a_job(outbox_rt: Runtime) -> None:
    service: EmailService = outbox_rt.services["email"]
    async with outbox_rt.db.session() as session:
        with pytest.raises(ValueError, match="recipient"):
            await service.send(session, to="ada@example.com\r\nBcc: x@evil.example", template="welcome", context={})
        with pytest.raises(ValueError, match="unknown email template"):
            await service.send(session, to="ada@example.com", template="nope", context={})
