import pytest

from tradepilot.config import Settings
from tradepilot.identity.passwords import PasswordHashing, PasswordPolicyError, check_policy, common_passwords


def test_production_argon2_parameters_meet_owasp() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    hasher = PasswordHashing(settings).hasher
    # OWASP: argon2id with m >= 19 MiB, t >= 2 (or stronger equivalents); we use RFC 9106's 64 MiB, t=3
    assert hasher.memory_cost >= 19 * 1024 and hasher.time_cost >= 2 and hasher.type.name == "ID"
    assert PasswordHashing(settings).hash("correct horse battery").startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_common_list_is_shipped_and_refused() -> None:
    assert len(common_passwords()) > 10_000
    for pw in ("password", "12345678", "Password1", "qwertyuiop"):
        with pytest.raises(PasswordPolicyError) as err:
            check_policy(pw)
        assert err.value.code == "common_password"


@pytest.mark.parametrize("pw", ["short", "x" * 129])
def test_length_bounds(pw: str) -> None:
    with pytest.raises(PasswordPolicyError) as err:
        check_policy(pw)
    assert err.value.code == "weak_password"


def test_no_composition_rules_and_long_passphrases_allowed() -> None:
    check_policy("lowercase only passphrase")
    check_policy("ä" * 64)


def test_verify_with_unknown_user_costs_a_hash_and_fails() -> None:
    hashing = PasswordHashing(Settings(_env_file=None, argon2_time_cost=1, argon2_memory_cost_kib=64,  # type: ignore[call-arg]
                                       argon2_parallelism=1))
    assert hashing.verify(None, "timing-equaliser-not-a-password") is False
    stored = hashing.hash("a good passphrase")
    assert hashing.verify(stored, "a good passphrase") and not hashing.verify(stored, "wrong passphrase")
