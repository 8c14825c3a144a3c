"""TOTP as the 2FA module configures pyotp: RFC 6238 Appendix B vectors, the ±1 step window,
and the shape of recovery and emailed codes."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from tradepilot.identity.twofactor import (
    TOTP_DIGITS,
    make_totp,
    matching_step,
    new_email_code,
    new_recovery_code,
    new_totp_secret,
    normalise_code,
)

# RFC 6238 Appendix B, the SHA1 column: the seed is the ASCII string "12345678901234567890"
RFC_SEED = base64.b32encode(b"12345678901234567890").decode()
RFC_SHA1_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("unix_time", "expected"), RFC_SHA1_VECTORS)
def test_rfc6238_appendix_b_sha1(unix_time: int, expected: str) -> None:
    at = datetime.fromtimestamp(unix_time, tz=UTC)
    totp = make_totp(RFC_SEED, digits=8)
    assert totp.at(at) == expected
    assert matching_step(totp, expected, at=at) == unix_time // 30


def test_account_totp_is_six_digits_sha1_30_seconds() -> None:
    totp = make_totp(RFC_SEED)
    assert totp.digits == TOTP_DIGITS == 6 and totp.interval == 30 and totp.digest().name == "sha1"
    # the 6-digit code is the 8-digit one's last six digits (RFC 4226 truncation)
    assert totp.at(datetime.fromtimestamp(59, tz=UTC)) == "287082"


def test_window_is_one_step_either_side() -> None:
    totp = make_totp(new_totp_secret())
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    step = totp.timecode(now)
    for offset in (-1, 0, 1):
        assert matching_step(totp, totp.at(now, counter_offset=offset), at=now) == step + offset
    for offset in (-2, 2):
        code = totp.at(now, counter_offset=offset)
        if code not in {totp.at(now, counter_offset=o) for o in (-1, 0, 1)}:  # a 1-in-10^6 coincidence
            assert matching_step(totp, code, at=now) is None
    # the last second of a step and the first of the next are one step apart
    assert matching_step(totp, totp.at(now), at=now + timedelta(seconds=59)) == step


def test_malformed_codes_never_match() -> None:
    totp = make_totp(new_totp_secret())
    now = datetime(2026, 3, 1, tzinfo=UTC)
    good = totp.at(now)
    for bad in ("", good[:5], good + "0", "abcdef", " " + good[1:]):
        assert matching_step(totp, bad, at=now) is None


def test_secrets_are_160_bit_base32() -> None:
    secrets = {new_totp_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret) and len(base64.b32decode(secret)) == 20


def test_recovery_codes_shape_and_normalisation() -> None:
    codes = {new_recovery_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert re.fullmatch(r"[23456789abcdefghjkmnpqrstuvwxyz]{4}-[23456789abcdefghjkmnpqrstuvwxyz]{4}-"
                            r"[23456789abcdefghjkmnpqrstuvwxyz]{2}", code)
    assert normalise_code(" ABCD-efgh-23 ") == normalise_code("abcdefgh23") == "abcdefgh23"


def test_email_codes_are_six_digits() -> None:
    codes = [new_email_code() for _ in range(200)]
    assert all(re.fullmatch(r"\d{6}", c) for c in codes) and len(set(codes)) > 150
