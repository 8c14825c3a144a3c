"""LLM providers are operator settings: validated at start, their keys never in a config backup."""

from __future__ import annotations

import json

import pytest

from tradepilot.config import ConfigError, Settings, load_settings
from tradepilot.ops.backup.config_backup import config_json, effective_config

LOCAL = {"name": "local", "base_url": "http://127.0.0.1:11434/v1/", "model": "llama3.1:8b"}


def _settings(monkeypatch: pytest.MonkeyPatch, providers: list[dict], keys: dict[str, str] | None = None) -> Settings:
    monkeypatch.setenv("TRADEPILOT_LLM_PROVIDERS", json.dumps(providers))
    monkeypatch.setenv("TRADEPILOT_LLM_API_KEYS", json.dumps(keys or {}))
    return load_settings(_env_file=None)


def test_providers_and_keys_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, [LOCAL, {**LOCAL, "name": "openai", "base_url": "https://api.openai.com/v1",
                                               "model": "gpt-4o-mini", "timeout_seconds": 20}],
                         {"openai": "sk-secret-value"})
    local, remote = settings.llm_providers
    assert local.base_url == "http://127.0.0.1:11434/v1" and local.timeout_seconds == 30 and local.registry_name == "llm:local"
    assert remote.timeout_seconds == 20 and settings.llm_api_keys["openai"].get_secret_value() == "sk-secret-value"
    assert "sk-secret-value" not in str(settings.masked())


@pytest.mark.parametrize(("providers", "keys", "message"), [
    ([LOCAL, LOCAL], {}, "unique"),
    ([LOCAL], {"lokal": "sk-1"}, "no provider named lokal"),
    ([{**LOCAL, "base_url": "file:///etc/passwd"}], {}, "http(s) URL"),
    ([{**LOCAL, "base_url": "http://user:pw@127.0.0.1/v1"}], {}, "credentials"),
    ([{**LOCAL, "name": "Bad Name"}], {}, "TRADEPILOT_LLM_PROVIDERS"),
    ([{**LOCAL, "timeout_seconds": 0}], {}, "TRADEPILOT_LLM_PROVIDERS"),
    ([{**LOCAL, "api_key": "sk-inline"}], {}, "TRADEPILOT_LLM_PROVIDERS"),  # keys only in LLM_API_KEYS
])
def test_bad_provider_settings_stop_the_start(monkeypatch: pytest.MonkeyPatch, providers: list[dict],
                                              keys: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _settings(monkeypatch, providers, keys)


def test_a_configuration_backup_keeps_the_providers_and_leaves_out_their_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, [LOCAL], {"local": "sk-never-in-a-backup"})
    config = effective_config(settings)
    assert config["TRADEPILOT_LLM_PROVIDERS"] == [{"name": "local", "base_url": "http://127.0.0.1:11434/v1",
                                                   "model": "llama3.1:8b", "timeout_seconds": 30.0,
                                                   "max_answer_tokens": 1024}]
    assert "TRADEPILOT_LLM_API_KEYS" not in config
    assert b"sk-never-in-a-backup" not in config_json(settings) and b"llama3.1:8b" in config_json(settings)
    # what the backup holds configures the same providers again
    monkeypatch.setenv("TRADEPILOT_LLM_PROVIDERS", json.dumps(config["TRADEPILOT_LLM_PROVIDERS"]))
    monkeypatch.delenv("TRADEPILOT_LLM_API_KEYS")
    assert load_settings(_env_file=None).llm_providers == settings.llm_providers
