"""Typed settings, read once from the environment (prefix ``TRADEPILOT_``) and ``.env``.

Every knob of the platform lives here, validated when the process starts, so that a typo
stops the server with a message naming the variable instead of failing at 3 a.m.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tradepilot.ai.feed_settings import FeedSource, check_feeds
from tradepilot.ai.llm_settings import LLMProvider, check_providers

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
    log_file: Path | None = None  # also write JSON lines here (rotated); GET /api/system/logs reads it

    database_url: str = "sqlite+aiosqlite:///./tradepilot.db"
    database_echo: bool = False
    redis_url: str | None = None
    redis_prefix: str = "tradepilot:"

    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    metrics_token: SecretStr | None = None
    # Fernet keys for secrets at rest (TOTP secrets, exchange credentials), comma-separated;
    # the first encrypts, all decrypt. Production requires them; in development and tests a
    # stable key is derived from secret_key when none is set (see _derive_encryption_key).
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

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
    jobs_inprocess: bool | None = None  # run jobs in this process; None: only when REDIS_URL is unset
    jobs_concurrency: int = Field(8, ge=1, le=256)
    jobs_heartbeat_timeout_seconds: float = Field(60.0, ge=5)
    jobs_backoff_base_seconds: float = Field(5.0, gt=0)
    jobs_backoff_max_seconds: float = Field(3600.0, gt=0)
    jobs_redispatch_seconds: float = Field(300.0, gt=0)
    jobs_shutdown_grace_seconds: float = Field(10.0, ge=0)
    jobs_schedule_retention_days: int = Field(7, ge=1)
    jobs_retention_days: int = Field(30, ge=1)
    lease_ttl_seconds: float = Field(15.0, gt=0)
    # Strategy optimisation (strategies/optimize/): worker processes per optimisation job (0: one
    # per CPU core), and with PostgreSQL how many jobs share each window's study (1: its own only).
    optimize_workers: int = Field(0, ge=0, le=256)
    optimize_shards: int = Field(1, ge=1, le=64)

    # Rate limits (identity.ratelimit): per user (plan's requests_per_minute) or per client IP
    # when anonymous, per endpoint class; Redis-backed when REDIS_URL is set.
    rate_limit_enabled: bool = True
    rate_limit_anonymous_per_minute: int = Field(60, ge=1)
    rate_limit_auth_per_minute: int = Field(30, ge=1)  # login, register, reset, 2FA: strict
    # Login guard (identity.guard): progressive per-account lockout, on the runtime clock.
    login_lockout_threshold: int = Field(5, ge=1)  # failures before the first lock
    login_lockout_base_seconds: int = Field(60, ge=1)  # first lock; doubles per further failure
    login_lockout_max_seconds: int = Field(900, ge=1)  # never longer than this
    login_failure_memory_seconds: int = Field(3600, ge=60)  # a quiet hour forgets the failures
    login_ip_failure_limits: str = "20/minute;100/hour"  # failures from one IP, across accounts
    demo_email: str = "demo@example.com"

    # WebSocket streaming (/api/ws)
    stream_queue_size: int = Field(1000, ge=10)  # undelivered messages per client before slow_consumer
    stream_send_timeout_seconds: float = Field(10.0, gt=0)  # one send blocked this long: slow_consumer
    stream_heartbeat_seconds: float = Field(15.0, gt=0)  # app-level {"type":"ping"} interval
    stream_auth_timeout_seconds: float = Field(10.0, gt=0)  # time to send the first "auth" message
    stream_reauth_grace_seconds: float = Field(30.0, ge=0)  # after token expiry, time to re-auth in-band
    stream_revalidate_seconds: float = Field(60.0, gt=0)  # credentials re-checked this often (bus-independent)
    stream_replay_limit: int = Field(1000, ge=1)  # longest account gap replayed; longer: resync_required

    # Market data (market/): which feed, which symbols, the simulated market's seed and history
    market_feed: Literal["simulated", "replay", "exchange"] = "simulated"
    market_feed_owner: bool = True  # false: never run the feed here, only consume it (API-only replicas)
    market_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"])
    market_seed: int = 20240809
    market_backfill_days: float = Field(730.0, ge=0, le=3650)  # simulated history on first start
    market_tick_interval_seconds: float = Field(0.5, ge=0.05, le=60)  # simulated ticks; must divide 60 s
    market_ticker_interval_seconds: float = Field(0.5, ge=0.05)  # at most one ticker per symbol per this
    market_candle_publish_seconds: float = Field(1.0, ge=0.05)  # updates of open candles, per timeframe
    market_candle_flush_seconds: float = Field(15.0, gt=0)  # closed bars reach the store this often
    market_instruments_refresh_seconds: float = Field(30.0, gt=0)  # replicas re-read the registry
    # Replay venue (market/feeds/replay.py), with TRADEPILOT_MARKET_FEED=replay
    market_replay_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)  # files or globs, CSV
    market_replay_speed: float = Field(1.0, ge=0)  # 1 = recorded pace, 0 = as fast as possible
    market_replay_venue: str = "replay"
    market_replay_loop: bool = True
    market_replay_rebase_time: bool = True
    market_replay_depth: int = Field(20, ge=1, le=1000)
    # Exchange venue through ccxt (market/feeds/ccxt_feed.py), with TRADEPILOT_MARKET_FEED=exchange
    market_exchange: str = "binance"
    market_exchange_websocket: bool = True
    market_exchange_depth: int = Field(20, ge=1, le=1000)
    market_exchange_poll_seconds: float = Field(1.0, gt=0)
    market_exchange_rest_url: str | None = None
    market_exchange_ws_url: str | None = None

    # Paper trading (trading/): every user's default paper account starts with this balance
    # of this asset, and POST /api/trading/accounts/{id}/reset returns an account to it.
    paper_starting_balance: Decimal = Decimal(10000)
    paper_quote_asset: str = "USDT"
    # Paper exchange (docs/orders.md): fee rates (fractions of a fill's notional, in the quote
    # asset), and the matching owner (lease paper-matching:<venue>) of resting and conditional orders.
    paper_maker_fee_rate: Decimal = Field(Decimal("0.001"), ge=0, lt=1)
    paper_taker_fee_rate: Decimal = Field(Decimal("0.001"), ge=0, lt=1)
    paper_matching_enabled: bool = True  # false: this process never matches resting orders
    paper_matching_resync_seconds: float = Field(5.0, gt=0)  # the owner re-reads open orders this often

    # Live trading (trading/live/, docs/exchanges.md): exchanges users may bind accounts to,
    # whether withdrawal-enabled API keys are accepted, where each exchange's REST API is
    # (None: the real one; tests point it at a local server), and the venue's patience.
    live_exchanges: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["binance"])
    live_allow_withdrawal_keys: bool = False
    live_exchange_rest_url: str | None = None
    live_exchange_ws_url: str | None = None  # tests: the exchange's WebSocket API on loopback
    live_user_stream_enabled: bool = True  # push order updates (ccxt.pro watch_orders) where supported
    live_request_timeout_seconds: float = Field(10.0, gt=0)
    live_lookup_attempts: int = Field(6, ge=1, le=50)  # looking an order up after an unknown outcome
    live_lookup_backoff_seconds: float = Field(0.5, gt=0)  # doubling between lookups
    live_market_buffer: Decimal = Field(Decimal("0.02"), ge=0, lt=1)  # extra reserved for a market buy's slippage
    # reconciliation of live accounts (trading/live/reconciliation.py): one process per account, by lease
    live_reconcile_enabled: bool = True
    live_reconcile_interval_seconds: float = Field(60.0, gt=0)  # between periodic runs, by the runtime's clock
    live_reconcile_poll_seconds: float = Field(1.0, gt=0)  # how often owners look at the clock / for new accounts
    live_emulation_interval_seconds: float = Field(2.0, ge=0)  # between ticks of emulated orders: trailing sells, positions' exits (clock)
    live_pending_grace_seconds: float = Field(120.0, gt=0)  # a pending_new order the exchange never saw ends after

    # Notifications and alerts (docs/notifications.md, docs/alerts.md): the outbox consumer that
    # makes notifications (lease notifications-consumer) and the alert engine (lease alerts-engine).
    notifications_consumer_enabled: bool = True
    alerts_engine_enabled: bool = True
    alerts_resync_seconds: float = Field(30.0, gt=0)  # the engine re-reads the alerts table this often
    alerts_portfolio_seconds: float = Field(30.0, gt=0)  # P&L and risk alerts are re-checked this often
    signals_tracker_enabled: bool = True  # follow signals against the market (one process, by lease)
    signals_tracker_seconds: float = Field(15.0, gt=0)  # and step this often (at once on a new signal)
    signals_webhook_per_minute: int = Field(30, ge=1)  # inbound signals per webhook URL

    # Live runs of strategies (docs/strategies.md, "Live runs"): the supervisor in every process
    # competes for each running strategy's lease (strategy-run:<id>) and feeds it closed bars.
    strategy_runs_enabled: bool = True
    strategy_runs_poll_seconds: float = Field(5.0, gt=0)  # new runs and closed bars are looked for this often
    strategy_runs_window_bars: int = Field(500, ge=10, le=10_000)  # history each bar's decision sees

    # Outbound calls to user-supplied hosts (core/outbound.py) and the push channels
    # (notifications/, docs/notifications.md). Allowed hosts ("host" or "host:port") skip the
    # public-address check; base URLs are settings so tests point the clients at local servers.
    outbound_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    outbound_timeout_seconds: float = Field(10.0, gt=0)
    outbound_max_response_bytes: int = Field(256 * 1024, ge=1024)
    notification_delivery_attempts: int = Field(6, ge=1, le=50)  # then the delivery is dead-lettered
    telegram_bot_token: SecretStr | None = None
    telegram_bot_username: str | None = None  # for the t.me/<bot>?start=<code> link
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_secret: SecretStr | None = None  # set: POST /api/notifications/telegram/webhook is on
    telegram_polling: bool = False  # long polling (getUpdates) instead of the webhook
    webpush_vapid_private_key: SecretStr | None = None  # PEM or raw base64url; None: generated into data_dir
    webpush_vapid_subject: str = "mailto:admin@localhost"

    # Backup and restore (ops/backup/, docs/operations.md): archives are encrypted with these
    # Fernet keys (comma-separated; the first encrypts, all decrypt), kept outside the database.
    # Production refuses to back up without them; elsewhere a key is derived from secret_key.
    backup_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    backup_dir: Path | None = None  # None: <data_dir>/backups
    backup_schedule_enabled: bool = True  # the daily automatic backup (03:17 UTC) runs
    backup_retention_count: int = Field(7, ge=1)  # the newest this many backups are always kept
    backup_retention_days: int = Field(30, ge=1)  # older ones beyond the newest N are deleted
    backup_verify_after_create: bool = True  # each new backup is test-restored and marked verified
    # Monitoring (ops/monitoring/, docs/operations.md): heartbeats for /uptime, metric samples for
    # windowed rates and the alert rules' evaluation, both on the runtime clock.
    monitoring_enabled: bool = True
    monitoring_heartbeat_seconds: float = Field(15.0, ge=1)
    monitoring_sample_seconds: float = Field(10.0, ge=1)  # samples, error flush and rule evaluation
    # `tradepilot worker` serves /metrics (Prometheus) and /health on TRADEPILOT_HOST at this port (None: not at all)
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    # AI direction models (ai/direction_job.py, docs/ai.md): one per symbol, timeframe and horizon,
    # trained from the candle store daily (02:41 UTC) and at start-up while none exists yet.
    ai_direction_symbols: Annotated[list[str], NoDecode] = Field(default_factory=list)  # empty: market_symbols
    ai_direction_timeframes: Annotated[list[Literal["1m", "5m", "15m", "1h", "4h", "1d"]], NoDecode] = Field(
        default_factory=lambda: ["1h"])
    ai_direction_horizons: Annotated[list[Annotated[int, Field(ge=1, le=500)]], NoDecode] = Field(
        default_factory=lambda: [1])
    ai_direction_retrain_enabled: bool = True  # the daily retraining runs
    ai_direction_train_on_start: bool = True  # a start-up with no model yet enqueues a training job
    # LLM providers (ai/llm_*.py, docs/ai.md "LLM providers"): OpenAI-compatible chat-completions
    # endpoints, operator-set only (a JSON list of {name, base_url, model, timeout_seconds,
    # max_answer_tokens}); their API keys apart (JSON {"<name>": "<key>"}), never in a config backup.
    llm_providers: list[LLMProvider] = Field(default_factory=list)
    llm_api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    llm_max_prompt_chars: int = Field(4000, ge=100, le=100_000)  # a custom prompt's own text
    llm_context_bars: int = Field(300, ge=200, le=2000)  # closed bars behind a prompt's indicators
    # RSS/Atom feeds (ai/feeds.py, docs/ai.md "Feeds"): operator-set only, a JSON list of {name, url,
    # symbols?}; fetched every 15 minutes by the ai.fetch_feeds job, each entry scored and stored once.
    ai_feeds: list[FeedSource] = Field(default_factory=list)
    ai_feeds_enabled: bool = True  # the scheduled fetch runs
    ai_feed_timeout_seconds: float = Field(10.0, gt=0, le=120)  # one fetch, connect to last byte
    ai_feed_max_bytes: int = Field(2_000_000, ge=1024, le=50_000_000)  # a larger document is refused

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("ai_direction_timeframes", "ai_direction_horizons", mode="before")
    @classmethod
    def _parse_ai_direction_lists(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("ai_direction_symbols", mode="before")
    @classmethod
    def _parse_ai_direction_symbols(cls, value: object) -> object:
        return cls._parse_market_symbols(value)  # the same BASE/QUOTE form, upper case, each once

    @field_validator("outbound_allowed_hosts", mode="before")
    @classmethod
    def _parse_outbound_hosts(cls, value: object) -> object:
        value = _split_csv(value)
        return [str(v).strip().lower() for v in value] if isinstance(value, list) else value

    @field_validator("live_exchanges", mode="before")
    @classmethod
    def _parse_live_exchanges(cls, value: object) -> object:
        value = _split_csv(value)
        return [str(v).strip().lower() for v in value] if isinstance(value, list) else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _parse_encryption_keys(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            for key in value:
                raw = key.get_secret_value() if isinstance(key, SecretStr) else str(key)
                if not _is_fernet_key(raw):
                    raise ValueError("each key must be a Fernet key (32 bytes, url-safe base64); "
                                     "make one with `tradepilot keys generate`")
        return value

    @field_validator("backup_keys", mode="before")
    @classmethod
    def _parse_backup_keys(cls, value: object) -> object:
        return cls._parse_encryption_keys(value)

    @field_validator("login_ip_failure_limits")
    @classmethod
    def _check_ip_failure_limits(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("expected limits like '20/minute;100/hour'") from None
        return value

    @field_validator("market_replay_paths", mode="before")
    @classmethod
    def _parse_replay_paths(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("market_symbols", mode="before")
    @classmethod
    def _parse_market_symbols(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            out = []
            for raw in value:
                symbol = str(raw).strip().upper()
                base, sep, quote = symbol.partition("/")
                if not sep or not base.isalnum() or not quote.isalnum():
                    raise ValueError(f"{raw!r} is not a BASE/QUOTE symbol such as BTC/USDT")
                if symbol not in out:
                    out.append(symbol)
            return out
        return value

    @field_validator("paper_starting_balance", mode="before")
    @classmethod
    def _check_paper_starting_balance(cls, value: object) -> object:
        from tradepilot.core.money import PrecisionLossError, parse_decimal

        if isinstance(value, float):  # a Python default or override, never an env string
            raise ValueError("must be an exact decimal (a string or an integer), not a float")
        try:
            amount = parse_decimal(value)
        except PrecisionLossError as exc:
            raise ValueError(f"must be a decimal number with at most 18 decimal places ({exc})") from None
        if amount < 0:
            raise ValueError("must not be negative")
        return amount

    @field_validator("paper_quote_asset", mode="before")
    @classmethod
    def _check_paper_quote_asset(cls, value: object) -> object:
        asset = str(value).strip().upper()
        if not (2 <= len(asset) <= 16 and asset.isascii() and asset.isalnum()):
            raise ValueError(f"{value!r} is not an asset code such as USDT (2-16 letters or digits)")
        return asset

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
        if not self.encryption_keys:
            problems.append(f"{ENV_PREFIX}ENCRYPTION_KEYS: required in production (comma-separated Fernet keys, "
                            "the first encrypts; make one with `tradepilot keys generate`)")
        if not self.public_url:
            problems.append(f"{ENV_PREFIX}PUBLIC_URL: required in production (links in emails)")
        elif not self.public_url.startswith("https://"):
            problems.append(f"{ENV_PREFIX}PUBLIC_URL: must be https:// in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _check_llm_providers(self) -> Settings:
        check_providers(self.llm_providers, set(self.llm_api_keys))
        return self

    @model_validator(mode="after")
    def _check_ai_feeds(self) -> Settings:
        check_feeds(self.ai_feeds)
        return self

    @model_validator(mode="after")
    def _derive_encryption_key(self) -> Settings:
        """Outside production, no ``ENCRYPTION_KEYS`` means one key derived from ``secret_key``:
        stable across restarts and replicas that share the secret, so development needs no setup."""
        if not self.encryption_keys and self.env != "production":
            digest = hashlib.sha256(b"tradepilot:encryption-key:v1:" + self.secret_key.get_secret_value().encode())
            self.encryption_keys = [SecretStr(base64.urlsafe_b64encode(digest.digest()).decode())]
        return self

    @property
    def effective_backup_dir(self) -> Path:
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

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


def _is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False


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
