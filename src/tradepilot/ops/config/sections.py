"""Typed sections over ``Settings``: each setting belongs to exactly one section, and each
section is a Pydantic model of its settings' own types (``ConfigManager.section``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from tradepilot.config import Settings

# section → the prefixes (or exact names) of the settings in it; the first match wins
SECTION_PREFIXES: dict[str, tuple[str, ...]] = {
    "database": ("database_", "redis_"),
    "exchanges": ("market_", "live_", "paper_"),
    "security": ("secret_key", "encryption_keys", "jwt_", "access_token_", "refresh_token_", "session_cache_",
                 "argon2_", "rate_limit_", "login_", "metrics_token", "trusted_proxies", "cors_origins",
                 "outbound_"),
    "email": ("smtp_", "email_"),
    "notifications": ("notifications_", "notification_", "telegram_", "webpush_", "alerts_", "stream_"),
    "ai": ("ai_", "llm_", "sentiment_"),
    "strategies": ("strategy_", "optimize_"),
    "jobs": ("jobs_", "lease_", "outbox_"),
    "backup": ("backup_",),
    "monitoring": ("monitoring_", "log_"),
    "server": (),  # everything else: env, host, port, public_url, data_dir…
}


def section_of(name: str) -> str:
    for section, prefixes in SECTION_PREFIXES.items():
        if any(name == p or name.startswith(p) for p in prefixes):
            return section
    return "server"


def section_fields() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in SECTION_PREFIXES}
    for name in Settings.model_fields:
        out[section_of(name)].append(name)
    return out


def _section_model(section: str, names: list[str]) -> type[BaseModel]:
    fields: dict[str, Any] = {name: (Settings.model_fields[name].annotation, ...) for name in names}
    return create_model(f"{section.title()}Config", __config__=ConfigDict(frozen=True, arbitrary_types_allowed=True),
                        **fields)


SECTION_MODELS: dict[str, type[BaseModel]] = {section: _section_model(section, names)
                                              for section, names in section_fields().items()}
