"""Request and response bodies of /api/auth/2fa."""

from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr, Field

from tradepilot.core.schemas import Schema


class PasswordBody(Schema):
    password: str = Field(min_length=1, max_length=1024)


class CodeBody(Schema):
    code: str = Field(min_length=6, max_length=32, description="The current code of the authenticator app")


class PasswordAndCode(Schema):
    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=6, max_length=32,
                      description="A code from the authenticator app, or a recovery code")


class EmailCodeRequest(Schema):
    """The login's own credentials: a code is mailed only to someone who knows the password."""

    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class Enrolment(Schema):
    """Shown once: put it in an authenticator app, then confirm with a code it shows."""

    secret: str = Field(description="Base32 TOTP secret (SHA-1, 6 digits, 30 s)")
    otpauth_uri: str = Field(description="otpauth:// URI for a QR code")
    issuer: str
    account: str


class RecoveryCodes(Schema):
    recovery_codes: list[str] = Field(description="Ten one-time codes. Shown once: store them somewhere safe.")


class TwoFactorStatus(Schema):
    enabled: bool
    pending: bool = Field(description="A secret was issued by /enable but not confirmed yet")
    enabled_at: datetime | None
    recovery_codes_left: int


class EmailCodeSent(Schema):
    status: str = "sent"
    detail: str
    expires_at: datetime
