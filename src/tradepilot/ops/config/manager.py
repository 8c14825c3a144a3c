"""``ConfigManager`` (the plan's): typed sections, and safe runtime updates of the settings that
can change without a restart — validated as a whole, applied on every replica, rolled back on error.

A change is validated by building a complete candidate ``Settings`` (every validator runs, so a
bad value is refused with the variable's name and the reason, and nothing is applied); then it
is applied to this process's live ``Settings`` object (components read these settings at the
moment they use them), stored as an override with an audit event in one transaction, and
announced on the bus. If the transaction fails, the process's values are put back. Every
replica re-reads the overrides when it hears the announcement (and at start): an override it
cannot validate is not applied there and is reported (``rejected``), its value unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.config import ENV_PREFIX, Settings
from tradepilot.core.errors import Unprocessable
from tradepilot.core.events import Event
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.ops.backup.config_backup import effective_config, is_secret_setting
from tradepilot.ops.config.models import ConfigOverride
from tradepilot.ops.config.sections import SECTION_MODELS, section_fields

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ops.config")

TOPIC = "ops.config"
CHANGED = "config.changed"
SERVICE_KEY = "config_manager"

# Settings every component reads when it uses them (never copied at start), so a new value
# takes effect at once and safely; everything else needs the environment changed and a restart.
RUNTIME_SETTINGS = frozenset({
    "log_level",
    "rate_limit_enabled", "rate_limit_anonymous_per_minute", "rate_limit_auth_per_minute",
    "login_lockout_threshold", "login_lockout_base_seconds", "login_lockout_max_seconds",
    "login_failure_memory_seconds",
    "backup_retention_count", "backup_retention_days", "backup_verify_after_create",
    "email_from",
    "live_lookup_attempts", "live_lookup_backoff_seconds", "live_market_buffer",
})


def _apply_log_level(value: str) -> None:
    logging.getLogger().setLevel(value)
    logging.getLogger("tradepilot").setLevel(value)


APPLIERS: dict[str, Callable[[Any], None]] = {"log_level": _apply_log_level}


class ConfigInvalid(Unprocessable):
    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['variable']}: {p['reason']}" for p in problems), code="invalid_setting",
                         extra={"errors": problems})


def field_name(name: str) -> str:
    """``TRADEPILOT_LOG_LEVEL`` or ``log_level`` → ``log_level``."""
    return name.upper().removeprefix(ENV_PREFIX).lower()


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        variable = env_name(loc[0]) if loc else "settings"
        out.append({"variable": variable, "reason": str(err["msg"]).removeprefix("Value error, ")})
    return out


class ConfigManager:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        # the environment's values of the runtime settings: a removed override returns to them
        self.baseline = {name: getattr(self.settings, name) for name in RUNTIME_SETTINGS}
        self.rejected: dict[str, str] = {}  # override → why this replica did not apply it
        # one change or reload at a time: a reload that read the overrides before a change
        # committed must not set its stale values after that change
        self._lock = asyncio.Lock()

    # -- reading ----------------------------------------------------------------------------

    def section(self, name: str) -> BaseModel:
        """A section as its typed model (secrets included: for code, never for answers)."""
        model = SECTION_MODELS[name]
        return model.model_validate({field: getattr(self.settings, field) for field in model.model_fields})

    def describe(self) -> dict[str, Any]:
        """Every section's settings by variable name, secrets left out; which can change at runtime."""
        visible = effective_config(self.settings)
        sections: dict[str, dict[str, Any]] = {}
        for section, names in section_fields().items():
            sections[section] = {env_name(n): visible.get(env_name(n), "(secret)") for n in names}
        return {"sections": sections, "runtime_changeable": sorted(env_name(n) for n in RUNTIME_SETTINGS),
                "rejected_overrides": {env_name(n): why for n, why in self.rejected.items()}}

    # -- validating -------------------------------------------------------------------------

    def validate(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The typed new values by field name (None: back to the environment's), or ``ConfigInvalid``."""
        problems: list[dict[str, str]] = []
        wanted: dict[str, Any] = {}
        for raw_name, value in changes.items():
            name = field_name(raw_name)
            if name not in Settings.model_fields:
                problems.append({"variable": env_name(name), "reason": "no such setting"})
            elif name not in RUNTIME_SETTINGS:
                problems.append({"variable": env_name(name),
                                 "reason": "cannot change while running: set it in the environment and restart"})
            else:
                wanted[name] = self.baseline[name] if value is None else value
        if problems:
            raise ConfigInvalid(problems)
        candidate = self.candidate(wanted)
        return {name: None if changes_value_is_reset(changes, name) else getattr(candidate, name) for name in wanted}

    def candidate(self, wanted: dict[str, Any]) -> Settings:
        current = {name: getattr(self.settings, name) for name in Settings.model_fields}
        try:
            return Settings.model_validate({**current, **wanted})
        except ValidationError as exc:
            raise ConfigInvalid(_problems(exc)) from None

    # -- applying ---------------------------------------------------------------------------

    def _set_local(self, values: dict[str, Any]) -> dict[str, Any]:
        """Set the values on the live settings (None: the baseline); returns the previous ones."""
        previous: dict[str, Any] = {}
        try:
            for name, value in values.items():
                previous[name] = getattr(self.settings, name)
                value = self.baseline[name] if value is None else value
                setattr(self.settings, name, value)
                applier = APPLIERS.get(name)
                if applier is not None:
                    applier(value)
        except Exception:
            self._restore(previous)
            raise
        return previous

    def _restore(self, previous: dict[str, Any]) -> None:
        for name, value in previous.items():
            setattr(self.settings, name, value)
            applier = APPLIERS.get(name)
            if applier is not None:
                applier(value)

    async def update(self, session: AsyncSession, changes: dict[str, Any], *, by: uuid.UUID | None,
                     ip: str | None = None) -> dict[str, dict[str, Any]]:
        """Validate, apply here, store and audit in one transaction, announce; the changes as
        ``{variable: {"old", "new"}}``. Any failure leaves this process's values as they were."""
        async with self._lock:
            report = await self._update(session, changes, by=by, ip=ip)
        await self._announce(sorted(field_name(k) for k in changes))
        return report

    async def _update(self, session: AsyncSession, changes: dict[str, Any], *, by: uuid.UUID | None,
                      ip: str | None) -> dict[str, dict[str, Any]]:
        values = self.validate(changes)
        now = self.runtime.clock.now()
        previous = self._set_local(values)
        report = {env_name(n): {"old": _json(previous[n]), "new": _json(getattr(self.settings, n))} for n in values}
        try:
            for name, value in values.items():
                await session.execute(delete(ConfigOverride).where(ConfigOverride.name == name))
                if value is not None:
                    session.add(ConfigOverride(name=name, value=_json(value), updated_by=by, updated_at=now))
            record_security_event(session, clock=self.runtime.clock, kind=SecurityEventKind.ADMIN_ACTION,
                                  user_id=by, ip=ip, details={"action": "config_changed", "changes": report})
            await session.commit()
        except BaseException:
            await session.rollback()
            self._restore(previous)
            raise
        logger.warning("configuration changed", extra={"changes": report})
        return report

    async def reload(self) -> None:
        """Apply the stored overrides (at start, and when another replica announces a change)."""
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:
        async with self.runtime.db.session() as session:
            rows = {row.name: row.value for row in await session.scalars(select(ConfigOverride))}
        wanted = {name: rows.get(name) for name in RUNTIME_SETTINGS}
        accepted: dict[str, Any] = {}
        self.rejected = {}
        for name, value in wanted.items():
            if value is None:
                accepted[name] = None
                continue
            try:
                accepted[name] = getattr(self.candidate({name: value}), name)
            except ConfigInvalid as exc:
                self.rejected[name] = exc.detail
                logger.error("configuration override refused here; the value stays",
                             extra={"setting": env_name(name), "reason": exc.detail})
        changed = {n: v for n, v in accepted.items()
                   if getattr(self.settings, n) != (self.baseline[n] if v is None else v)}
        if changed:
            self._set_local(changed)

    async def on_event(self, event: Event) -> None:
        if event.type == CHANGED:
            await self.reload()

    async def _announce(self, names: list[str]) -> None:
        try:
            await self.runtime.bus.publish(Event(topic=TOPIC, type=CHANGED, payload={"settings": names}))
        except Exception:  # the stored override is the truth; replicas re-read it at start
            logger.warning("could not announce a configuration change on the bus", exc_info=True)

    # -- backup and restore -----------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """The effective configuration without any secret (``ops.backup.config_backup``)."""
        return effective_config(self.settings)

    def restorable(self, document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """From an exported document: the runtime settings whose value differs (to apply), and the
        other differing variables (they need the environment changed and a restart)."""
        current = effective_config(self.settings)
        apply: dict[str, Any] = {}
        needs_restart: list[str] = []
        for variable, value in document.items():
            name = field_name(variable)
            if name not in Settings.model_fields or is_secret_setting(name, getattr(self.settings, name)):
                continue
            if _same(current.get(env_name(name)), value):
                continue
            if name in RUNTIME_SETTINGS:
                apply[name] = value
            else:
                needs_restart.append(env_name(name))
        return apply, sorted(needs_restart)


def _same(current: Any, value: Any) -> bool:
    """Equal as configuration: numbers by value (a JSON body's 0.05 arrives as Decimal)."""
    numbers = (int, float, Decimal)
    if isinstance(current, numbers) and isinstance(value, numbers) and not isinstance(current, bool) \
            and not isinstance(value, bool):
        return Decimal(str(current)) == Decimal(str(value))
    return bool(current == value)


def changes_value_is_reset(changes: dict[str, Any], name: str) -> bool:
    return any(field_name(k) == name and v is None for k, v in changes.items())


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def config_manager(runtime: Runtime) -> ConfigManager:
    manager = runtime.services.get(SERVICE_KEY)
    if manager is None:
        manager = runtime.services[SERVICE_KEY] = ConfigManager(runtime)
    return manager  # type: ignore[no-any-return]


async def start_config(runtime: Runtime) -> None:
    manager = config_manager(runtime)
    await manager.reload()
    await runtime.bus.subscribe(TOPIC, manager.on_event)
