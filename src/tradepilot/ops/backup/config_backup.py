"""Configuration backup: the effective settings, with every secret left out (not masked).

A backup of the configuration is meant to be kept and compared, so it must never carry
``SECRET_KEY``, encryption or backup keys, the SMTP password, LLM or exchange API keys, or
the database and Redis passwords. A field is left out when it is a ``SecretStr`` (or a list
of them), or when its name says it is a secret — so a setting added later with a name like
``llm_api_key`` is left out even if someone forgets to make it a ``SecretStr``. Passwords
inside URLs are removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

from tradepilot.config import ENV_PREFIX, Settings

SECRET_NAME_PARTS = ("secret", "password", "passwd", "token", "api_key", "apikey", "private_key", "credential")
SECRET_NAMES = frozenset({"encryption_keys", "backup_keys"})


def is_secret_setting(name: str, value: object) -> bool:
    if name in SECRET_NAMES or any(part in name for part in SECRET_NAME_PARTS):
        return True
    if isinstance(value, SecretStr):
        return True
    return isinstance(value, list) and any(isinstance(v, SecretStr) for v in value)


def strip_url_password(url: str) -> str:
    """``scheme://user:pw@host/db`` → ``scheme://user@host/db`` (query and path kept)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def effective_config(settings: Settings) -> dict[str, Any]:
    """``TRADEPILOT_*`` name → value, secrets left out, as JSON-able values."""
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if is_secret_setting(name, value):
            continue
        if isinstance(value, str) and "://" in value:
            value = strip_url_password(value)
        out[f"{ENV_PREFIX}{name.upper()}"] = _jsonable(value)
    return out


def config_json(settings: Settings) -> bytes:
    return json.dumps(effective_config(settings), indent=2, sort_keys=True).encode()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):  # e.g. an LLM provider: its fields, as the env var's JSON takes them
        return value.model_dump(mode="json")
    return str(value)
