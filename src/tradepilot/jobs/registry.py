"""Which code runs each kind of job: ``@job_handler("email.send")`` and the context it gets."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

# Modules that register handlers. Every process that runs jobs imports them, so a worker
# knows every kind a web process can enqueue. Add a domain's handler module here.
HANDLER_MODULES: tuple[str, ...] = (
    "tradepilot.email.delivery",
    "tradepilot.identity.recovery",
    "tradepilot.identity.deletion",
    "tradepilot.identity.idempotency",
    "tradepilot.portfolio.equity",
    "tradepilot.ops.backup.jobs",
    "tradepilot.notifications.digest",
    "tradepilot.notifications.delivery",
    "tradepilot.notifications.reports",
    "tradepilot.strategies.backtest_job",
    "tradepilot.strategies.optimize.job",
    "tradepilot.ai.direction_job",
    "tradepilot.ai.feeds_job",
)


class JobCancelled(Exception):
    """Raised by ``JobContext.progress`` once cancellation of the job was requested."""


class JobLost(JobCancelled):
    """Raised by ``JobContext.progress`` when this worker no longer owns the job (it was reaped)."""


class PermanentJobError(Exception):
    """Raise from a handler to fail at once, without retrying (bad input, not a hiccup)."""


class RetryLater(Exception):
    """Raise from a handler to run again after ``delay_seconds`` (a remote's ``Retry-After``, a
    rate limit) rather than after the usual back-off. ``counts=False``: this attempt does not
    count towards ``max_attempts`` (the handler chose to wait; nothing failed)."""

    def __init__(self, delay_seconds: float, message: str = "", *, counts: bool = True) -> None:
        super().__init__(message or f"retry in {delay_seconds:g} s")
        self.delay_seconds = max(0.0, float(delay_seconds))
        self.counts = counts


@dataclass
class JobContext:
    """What a handler knows about the job it runs, and how it reports progress."""

    runtime: Runtime
    job_id: uuid.UUID
    kind: str
    attempt: int
    max_attempts: int
    user_id: uuid.UUID | None
    _report: Callable[[float, str | None], Awaitable[None]] = field(repr=False)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1) and heartbeat; raises JobCancelled if cancellation was asked."""
        await self._report(min(max(float(fraction), 0.0), 1.0), message)


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    func: Handler
    sensitive_payload: bool = False
    timeout_seconds: float | None = None


_HANDLERS: dict[str, HandlerSpec] = {}


def job_handler(kind: str, *, sensitive_payload: bool = False,
                timeout_seconds: float | None = None) -> Callable[[Handler], Handler]:
    """Register ``func`` as the handler of ``kind``.

    ``sensitive_payload``: the payload is erased once the job is final (e.g. an email that
    carries a reset token). ``timeout_seconds``: an attempt running longer fails.
    """

    def register(func: Handler) -> Handler:
        existing = _HANDLERS.get(kind)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job kind {kind!r} already has a handler")
        _HANDLERS[kind] = HandlerSpec(kind, func, sensitive_payload, timeout_seconds)
        return func

    return register


def get_handler(kind: str) -> HandlerSpec | None:
    return _HANDLERS.get(kind)


def known_kinds() -> frozenset[str]:
    return frozenset(_HANDLERS)


def load_handler_modules(extra: Iterable[str] = ()) -> None:
    """Import every module that registers handlers (and any extra ones named on the CLI)."""
    for name in (*HANDLER_MODULES, *extra):
        importlib.import_module(name)
