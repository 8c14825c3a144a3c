"""HTTP edge of signal webhooks: manage your secret URL, and the URL itself.

``POST /api/signals/webhook/<key>_<secret>`` takes a TradingView-style JSON alert (the fields of
``POST /api/signals``) and records it as a signal with source ``webhook``. It needs no other
credential — the URL is the credential — and is limited per webhook
(``signals_webhook_per_minute``) besides the per-address limit of every anonymous request.
Included before the signals router: ``/webhook`` is not a signal id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response, status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import Conflict, RateLimited
from tradepilot.core.routing import api_router
from tradepilot.identity.lifecycle import account_is_stopped
from tradepilot.identity.models import User
from tradepilot.identity.ratelimit import per_minute
from tradepilot.signals import webhooks
from tradepilot.signals.deps import ReadUser, Signals, TradeUser
from tradepilot.signals.models import SignalWebhook
from tradepilot.signals.router import signal_out
from tradepilot.signals.schemas import SignalCreate, SignalOut, WebhookOut, WebhookSecretOut

router = api_router(prefix="/api/signals/webhook", tags=["signals"])
_NONE = {404: {"description": "You have no webhook (webhook_not_found)"}}


def _out(row: SignalWebhook) -> WebhookOut:
    return WebhookOut(path=webhooks.public_path(row), created_at=row.created_at, rotated_at=row.rotated_at,
                      last_used_at=row.last_used_at)


def _secret_out(row: SignalWebhook, secret: str) -> WebhookSecretOut:
    return WebhookSecretOut(**_out(row).model_dump(), url_path=f"{webhooks.PATH}/{row.key}_{secret}", secret=secret)


def _secret_key(runtime: RuntimeDep) -> str:
    return runtime.settings.secret_key.get_secret_value()


@router.get("", response_model=WebhookOut, summary="Your signal webhook (without its secret)", responses=_NONE)
async def get_webhook(principal: ReadUser, db: DbSession) -> WebhookOut:
    row = await webhooks.webhook_of(db, principal.id)
    if row is None:
        raise webhooks.webhook_not_found()
    return _out(row)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookSecretOut,
             summary="Create your signal webhook", responses={409: {"description": "You have one (webhook_exists)"}})
async def create_webhook(principal: TradeUser, db: DbSession, runtime: RuntimeDep) -> WebhookSecretOut:
    """The URL with its secret, shown this once (only a hash is kept). Rotate to get a new one."""
    if await webhooks.webhook_of(db, principal.id) is not None:
        raise Conflict("You have a webhook already; rotate it for a new secret.", code="webhook_exists")
    row, secret = await webhooks.issue(db, _secret_key(runtime), principal.id, runtime.clock.now())
    out = _secret_out(row, secret)
    await db.commit()
    return out


@router.post("/rotate", response_model=WebhookSecretOut, summary="A new secret URL; the old one stops working",
             responses=_NONE)
async def rotate_webhook(principal: TradeUser, db: DbSession, runtime: RuntimeDep) -> WebhookSecretOut:
    if await webhooks.webhook_of(db, principal.id) is None:
        raise webhooks.webhook_not_found()
    row, secret = await webhooks.issue(db, _secret_key(runtime), principal.id, runtime.clock.now())
    out = _secret_out(row, secret)
    await db.commit()
    return out


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke your signal webhook", responses=_NONE)
async def revoke_webhook(principal: TradeUser, db: DbSession) -> Response:
    if not await webhooks.revoke(db, principal.id):
        raise webhooks.webhook_not_found()
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{token}", status_code=status.HTTP_201_CREATED, response_model=SignalOut,
             summary="Inbound: a signal from TradingView or any sender holding the URL",
             responses={404: {"description": "webhook_not_found (bad key or secret alike), unknown_symbol"},
                        422: {"description": "A payload that is not a signal (validation_error)"},
                        429: {"description": "Too many signals on this webhook (rate_limited)"}})
async def receive(token: Annotated[str, Path(min_length=1, max_length=200)], body: SignalCreate, db: DbSession,
                  runtime: RuntimeDep, signals: Signals) -> SignalOut:
    row = await webhooks.verify(db, _secret_key(runtime), token)
    owner = await db.get(User, row.user_id)
    if owner is None or account_is_stopped(owner):  # suspended or deactivated: nothing arrives for it
        raise webhooks.webhook_not_found()
    limiter = runtime.services.get("rate_limiter")
    if limiter is not None and runtime.settings.rate_limit_enabled:
        decision = await limiter.acquire(per_minute(runtime.settings.signals_webhook_per_minute), "signal-webhook",
                                         row.key)
        if not decision.allowed:
            raise RateLimited("Too many signals on this webhook; slow down.", code="rate_limited",
                              headers={"Retry-After": str(decision.retry_after), **decision.headers()})
    signal = await signals.create(db, row.user_id, body, source="webhook",
                                  details={"webhook": webhooks.public_path(row)})
    row.last_used_at = runtime.clock.now()
    out = signal_out(signal)
    await db.commit()
    return out
