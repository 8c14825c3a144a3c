"""Typed settings, read once from the environment (prefix ``TRADEPILOT_``) and ``.env``.

Every knob of the platform lives here, validated when the process starts, so that a typo
stops the server with a message naming the variable instead of failing at 3 a.m.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TRADEPILOT_"
DEFAULT_SECRET_KEY = "insecure-development-secret-change-me"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """Raised when settings are invalid; the message names each offending variable."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    env: Literal["development", "test", "production"] = "development"
    debug: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8008, ge=1, le=65535)
    public_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    database_url: str = "sqlite+aiosqlite:///./tradepilot.db"
    database_echo: bool = False
    redis_url: str | None = None
    redis_prefix: str = "tradepilot:"

    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    metrics_token: SecretStr | None = None

    jwt_issuer: str = "tradepilot"
    jwt_audience: str = "tradepilot-api"
    access_token_ttl_seconds: int = Field(900, ge=60, le=3600)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, ge=3600)
    session_cache_seconds: float = Field(3.0, ge=0, le=30)

    # argon2id, RFC 9106 second recommended option (64 MiB, t=3, p=4): above OWASP's minimums.
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_cost_kib: int = Field(65536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False
    smtp_timeout_seconds: float = 10.0
    email_from: str = "TradePilot <no-reply@tradepilot.local>"
    data_dir: Path = Path("./var")

    outbox_poll_seconds: float = Field(0.5, gt=0)
    jobs_poll_seconds: float = Field(1.0, gt=0)
    lease_ttl_seconds: float = Field(15.0, gt=0)
    demo_email: str = "demo@example.com"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith(("http://", "https://")):
                raise ValueError("must be an absolute http(s) URL")
            value = value.rstrip("/")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        secret = self.secret_key.get_secret_value()
        if secret == DEFAULT_SECRET_KEY or len(secret) < 32:
            problems.append(f"{ENV_PREFIX}SECRET_KEY: set a random secret of at least 32 characters")
        if self.debug:
            problems.append(f"{ENV_PREFIX}DEBUG: must be false in production")
        if "*" in self.cors_origins:
            problems.append(f"{ENV_PREFIX}CORS_ORIGINS: '*' is not allowed in production")
        if not self.public_url:
            problems.append(f"{ENV_PREFIX}PUBLIC_URL: required in production (links in emails)")
        elif not self.public_url.startswith("https://"):
            problems.append(f"{ENV_PREFIX}PUBLIC_URL: must be https:// in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def masked(self) -> dict[str, object]:
        """The effective configuration with every secret masked, for `config check`."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif name in ("database_url", "redis_url") and isinstance(value, str):
                value = _mask_url_password(value)
            elif isinstance(value, list):
                value = [str(v) for v in value]
            elif isinstance(value, Path):
                value = str(value)
            out[f"{ENV_PREFIX}{name.upper()}"] = value
        return out


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}" if ":" in creds else url


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's errors into one message per variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            name = f"{ENV_PREFIX}{loc[0].upper()}" if loc else "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(msg if msg.startswith(ENV_PREFIX) else f"{name}: {msg}")
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
