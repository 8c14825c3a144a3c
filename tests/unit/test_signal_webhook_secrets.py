"""Webhook secrets are compared in constant time, also when the key is unknown."""

from __future__ import annotations

import hmac

from tradepilot.core import crypto
from tradepilot.signals import webhooks


def test_verification_compares_an_hmac_with_compare_digest_even_for_an_unknown_key() -> None:
    # the comparison (core.crypto: hmac.compare_digest, constant time in the inputs' length) ...
    assert crypto.constant_time_equals("a" * 64, "a" * 64) and not crypto.constant_time_equals("a" * 64, "b" * 64)
    # ... of two 64-character HMACs: the stored one, or for an unknown key a decoy of the same length
    assert len(webhooks._DECOY) == len(webhooks._hash("k", "s")) == 64
    assert webhooks._hash("k", "s") == hmac.new(__import__("hashlib").sha256(f"{webhooks.k.WEBHOOK_PURPOSE}:k".encode())
                                                .digest(), b"s", "sha256").hexdigest()
    assert webhooks.split_token("0123456789abcdef_secret") == ("0123456789abcdef", "secret")
    assert webhooks.split_token("short_secret") is None and webhooks.split_token("0123456789abcdefsecret") is None
