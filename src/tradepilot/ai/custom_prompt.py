"""The custom-prompt use case: the user's question to their active LLM, with market context.

Everything that can refuse the request (no LLM, a prompt over the operator's size limit, an
unknown symbol, too little data) is checked before a call is taken from the quota. The
answer is returned as text and nothing else happens: no order, alert or setting follows
from it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.active_models import active_model, provider_of
from tradepilot.ai.llm_context import portfolio_context, symbol_context
from tradepilot.ai.llm_schemas import CustomPrompt, CustomPromptAnswer, QuotaOut, TokenUsage
from tradepilot.ai.llm_service import call_llm, not_configured
from tradepilot.core.errors import Unprocessable
from tradepilot.identity.principal import AuthUser
from tradepilot.market.service import MarketService
from tradepilot.runtime import Runtime


async def ask(runtime: Runtime, db: AsyncSession, market: MarketService, principal: AuthUser,
              body: CustomPrompt) -> CustomPromptAnswer:
    settings = runtime.settings
    provider = provider_of(settings, await active_model(db, settings, principal.id, "chat"))
    if provider is None:
        raise not_configured()
    if len(body.prompt) > settings.llm_max_prompt_chars:
        raise Unprocessable(f"The prompt is {len(body.prompt)} characters; at most "
                            f"{settings.llm_max_prompt_chars} are accepted.", code="prompt_too_long",
                            extra={"limit": settings.llm_max_prompt_chars})
    symbols = list(dict.fromkeys(market.instrument(s).symbol for s in body.symbols))  # 404 before any work
    context: dict[str, Any] = {"as_of": runtime.clock.now().isoformat(), "venue": market.venue,
                               "markets": [await symbol_context(market, s, body.timeframe, settings.llm_context_bars)
                                           for s in symbols]}
    if body.include_portfolio:
        context["portfolio"] = await portfolio_context(db, principal.id)
    await db.rollback()  # end the read transaction: the call takes the quota in its own
    max_tokens = min(body.max_tokens or provider.max_answer_tokens, provider.max_answer_tokens)
    result = await call_llm(runtime, db, user_id=principal.id, provider=provider, purpose="custom_prompt",
                            user_text=body.prompt, context=context, symbols=symbols, max_tokens=max_tokens)
    answer = result.answer
    return CustomPromptAnswer(
        id=result.call_id, answer=answer.text, model=provider.registry_name, provider_model=answer.model or provider.model,
        finish_reason=answer.finish_reason, context=context,
        usage=TokenUsage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens),
        latency_ms=result.latency_ms,
        quota=QuotaOut(used=result.quota.used, limit=result.quota.limit, resets_at=result.quota.resets_at))
