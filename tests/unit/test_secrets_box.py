"""SecretBox (MultiFernet) and the TRADEPILOT_ENCRYPTION_KEYS setting."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken

from tradepilot.config import ConfigError, load_settings
from tradepilot.core.secrets_box import ENCRYPTED_COLUMNS, SecretBox, SecretUnreadable, generate_key


def test_round_trip_and_ciphertext_hides_the_plaintext() -> None:
    box = SecretBox([generate_key()])
    token = box.encrypt("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in token and box.decrypt(token) == "JBSWY3DPEHPK3PXP"
    assert box.encrypt("same") != box.encrypt("same")  # random IV: equal secrets are not linkable


def test_first_key_encrypts_every_key_decrypts() -> None:
    old, new = generate_key(), generate_key()
    before = SecretBox([old]).encrypt("s3cret")
    both = SecretBox([new, old])
    assert both.decrypt(before) == "s3cret" and not both.is_current(before)
    after = both.encrypt("s3cret")
    assert both.is_current(after) and Fernet(new.encode()).decrypt(after.encode()) == b"s3cret"
    with pytest.raises(InvalidToken):
        Fernet(old.encode()).decrypt(after.encode())


def test_rotate_reencrypts_with_the_primary_key() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox([old]).encrypt("s3cret")
    rotated = SecretBox([new, old]).rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "s3cret"
    with pytest.raises(SecretUnreadable):
        SecretBox([old]).decrypt(rotated)


def test_unknown_key_or_garbage_is_unreadable() -> None:
    token = SecretBox([generate_key()]).encrypt("s3cret")
    stranger = SecretBox([generate_key()])
    for bad in (token, "not a token", "é"):
        with pytest.raises(SecretUnreadable):
            stranger.decrypt(bad)
        with pytest.raises(SecretUnreadable):
            stranger.rotate(bad)
        assert not stranger.is_current(bad)


def test_totp_secret_column_is_registered_for_rotation() -> None:
    import tradepilot.models_registry  # noqa: F401

    assert "user_account.totp_secret_encrypted" in ENCRYPTED_COLUMNS


def make(**kw: object):  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None, **kw)


def test_keys_parse_from_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = generate_key(), generate_key()
    monkeypatch.setenv("TRADEPILOT_ENCRYPTION_KEYS", f" {first} ,{second}")
    settings = make()
    assert [k.get_secret_value() for k in settings.encryption_keys] == [first, second]
    assert settings.masked()["TRADEPILOT_ENCRYPTION_KEYS"] == ["**********", "**********"]
    assert SecretBox.from_settings(settings).is_current(SecretBox([first]).encrypt("x"))


def test_a_malformed_key_names_the_variable_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEPILOT_ENCRYPTION_KEYS", f"{generate_key()},not-a-fernet-key")
    with pytest.raises(ConfigError) as err:
        make()
    assert "TRADEPILOT_ENCRYPTION_KEYS" in str(err.value) and "not-a-fernet-key" not in str(err.value)


def test_production_refuses_a_missing_key() -> None:
    safe = {"env": "production", "secret_key": "x" * 40, "public_url": "https://trade.example.com"}
    with pytest.raises(ConfigError) as err:
        make(**safe)
    assert "TRADEPILOT_ENCRYPTION_KEYS" in str(err.value)
    assert make(**safe, encryption_keys=generate_key()).encryption_keys


def test_development_derives_a_stable_key_from_the_secret_key() -> None:
    a1 = make(secret_key="one secret key that is long enough!!")
    a2 = make(secret_key="one secret key that is long enough!!")
    b = make(secret_key="another secret key, also long enough")
    key = a1.encryption_keys[0].get_secret_value()
    assert len(a1.encryption_keys) == 1 and key == a2.encryption_keys[0].get_secret_value()
    assert key != b.encryption_keys[0].get_secret_value()
    token = SecretBox.from_settings(a1).encrypt("x")
    assert SecretBox.from_settings(a2).decrypt(token) == "x"
