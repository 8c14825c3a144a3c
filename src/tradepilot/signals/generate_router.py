"""``POST /api/ai/generate-signals``: signals from a model or a strategy, stored as signals."""

from __future__ import annotations

from fastapi import status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.market.deps import Market
from tradepilot.signals.deps import Signals, TradeUser
from tradepilot.signals.generate import expiry_of, propose
from tradepilot.signals.router import signal_out
from tradepilot.signals.schemas import GeneratedSignals, GenerateSignals, Skipped

router = api_router(prefix="/api/ai", tags=["ai"])


@router.post("/generate-signals", status_code=status.HTTP_201_CREATED, response_model=GeneratedSignals,
             responses={404: {"description": "unknown_symbol"},
                        422: {"description": "validation_error, unknown_strategy, invalid_strategy_params, "
                                             "strategy_not_signal_based"},
                        503: {"description": "No trained direction model (model_not_ready, with Retry-After)"}})
async def generate_signals(body: GenerateSignals, principal: TradeUser, db: DbSession, market: Market,
                           runtime: RuntimeDep, signals: Signals) -> GeneratedSignals:
    """From the direction model (``source: model``: the side and strength from P(up), the stop
    and target from its return interval, its out-of-sample scores beside its baselines' in
    ``details``) or a signal strategy's decision on the latest closed bars (``source:
    strategy``). Each is stored as an active signal; symbols without one are in ``skipped``."""
    proposals = await propose(runtime, market, body)
    expires_at = expiry_of(body, runtime.clock.now())
    stored, skipped = [], []
    for proposal in proposals:
        if proposal.body is None:
            skipped.append(Skipped(symbol=proposal.symbol, reason=proposal.skipped or ""))
            continue
        proposal.body.expires_at = expires_at
        stored.append(await signals.create(db, principal.id, proposal.body, source=body.source,
                                           details=proposal.details))
    out = GeneratedSignals(items=[signal_out(s) for s in stored], skipped=skipped)
    await db.commit()
    return out
