"""A real SMTP server (aiosmtpd) on a free loopback port, collecting what it receives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    async def wait_for(self, address: str, subject_part: str, timeout: float = 15.0) -> EmailMessage:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for msg in self.to(address):
                if subject_part.lower() in str(msg["Subject"]).lower():
                    return msg
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no mail to {address} about {subject_part!r}; got "
                                     f"{[str(m['Subject']) for m in self.messages]}")
            await asyncio.sleep(0.02)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_token(msg: EmailMessage) -> tuple[str, str]:
    """The (url, token) of the first ?token= link in the mail's text part."""
    match = re.search(r"(https?://\S+?\?token=([A-Za-z0-9_-]+))", text_of(msg))
    assert match, text_of(msg)
    return match.group(1), match.group(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
