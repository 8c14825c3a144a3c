"""An LLM provider as the operator configures it (``TRADEPILOT_LLM_PROVIDERS``, a JSON list).

Only the operator names the endpoints: a base URL chosen by a user would be a path into the
server's own network. The API keys are not here but in ``TRADEPILOT_LLM_API_KEYS`` (provider
name → key), a setting whose name marks it secret, so a configuration backup or the config
API never carries them. This module imports nothing of the platform: ``config.py`` uses it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROVIDER_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class LLMProvider(BaseModel):
    """One OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM, llama.cpp…)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=PROVIDER_NAME_PATTERN, description="the registry lists it as llm:<name>")
    base_url: str = Field(description="up to and including /v1, e.g. http://127.0.0.1:11434/v1")
    model: str = Field(min_length=1, max_length=200, description="sent as the request's model")
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="the whole call, connect to last byte")
    max_answer_tokens: int = Field(1024, ge=16, le=32768, description="cap on max_tokens per call")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL with a host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("base_url must not carry credentials, a query or a fragment (the key is a setting)")
        return value.strip().rstrip("/")

    @property
    def registry_name(self) -> str:
        return f"llm:{self.name}"


def check_providers(providers: list[LLMProvider], key_names: set[str]) -> None:
    """Provider names are unique and every API key belongs to a configured provider (a key for
    a misspelt name would silently never be sent)."""
    names = [p.name for p in providers]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"TRADEPILOT_LLM_PROVIDERS: provider names must be unique ({', '.join(doubled)})")
    stray = sorted(key_names - set(names))
    if stray:
        raise ValueError(f"TRADEPILOT_LLM_API_KEYS: no provider named {', '.join(stray)}")
