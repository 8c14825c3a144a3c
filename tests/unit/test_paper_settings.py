"""TRADEPILOT_PAPER_STARTING_BALANCE and TRADEPILOT_PAPER_QUOTE_ASSET: exact, validated at start."""

from decimal import Decimal

import pytest

from tradepilot.config import ConfigError, load_settings


def test_defaults_are_10000_usdt() -> None:
    settings = load_settings(_env_file=None)
    assert settings.paper_starting_balance == Decimal(10000) and settings.paper_quote_asset == "USDT"


def test_values_from_the_environment_are_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEPILOT_PAPER_STARTING_BALANCE", "0.1")
    monkeypatch.setenv("TRADEPILOT_PAPER_QUOTE_ASSET", " usdc ")
    settings = load_settings(_env_file=None)
    assert settings.paper_starting_balance == Decimal("0.1") and settings.paper_quote_asset == "USDC"


@pytest.mark.parametrize("name, value", [
    ("paper_starting_balance", "-1"),
    ("paper_starting_balance", "ten"),
    ("paper_starting_balance", "0.0000000000000000001"),
    ("paper_starting_balance", "1e19"),
    ("paper_starting_balance", "NaN"),
    ("paper_starting_balance", 0.1),
    ("paper_quote_asset", "US-DT"),
    ("paper_quote_asset", "U"),
    ("paper_quote_asset", "A" * 17),
])
def test_bad_values_stop_the_start_naming_the_variable(name: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None, **{name: value})
    assert f"TRADEPILOT_{name.upper()}" in str(err.value)
