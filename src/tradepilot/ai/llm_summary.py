"""analyze-market's summary written by the user's active summary LLM, from the facts only.

The facts (everything analyze-market measured, the sentiment and the prediction included) go to the LLM as
the context message; the instruction asks for a short summary of those facts. Any failure
— the quota, a timeout, an error of the provider — leaves the template's summary in place
with ``summary_source: "template_fallback"`` and the problem's code in ``summary_error``:
the analysis itself never fails because an LLM did.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.llm_service import call_llm
from tradepilot.ai.llm_settings import LLMProvider
from tradepilot.ai.schemas import MarketAnalysis
from tradepilot.core.errors import TradePilotError
from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ai.llm")

SUMMARY_MAX_TOKENS = 400
INSTRUCTION = ("Write a readable summary of this market analysis for a trader in 3 to 6 sentences: trend, regime, "
               "momentum, volatility, the nearest levels, patterns, the sentiment of recent texts and the model's "
               "prediction with its measured accuracy next to the baselines. Use only the facts in the context; give no advice to buy or sell.")


async def summarise_with_llm(runtime: Runtime, db: AsyncSession, user_id: uuid.UUID, provider: LLMProvider,
                             analysis: MarketAnalysis) -> MarketAnalysis:
    """``analysis`` with the LLM's summary, or with the template's and the reason it stayed."""
    facts = analysis.model_dump(mode="json", exclude={"summary", "summary_source", "summary_error"})
    try:
        result = await call_llm(runtime, db, user_id=user_id, provider=provider, purpose="summary",
                                user_text=INSTRUCTION, context={"analysis": facts}, symbols=[analysis.symbol],
                                max_tokens=min(SUMMARY_MAX_TOKENS, provider.max_answer_tokens))
    except TradePilotError as exc:
        logger.info("LLM summary fell back to the template", extra={"provider": provider.name, "code": exc.code})
        return analysis.model_copy(update={"summary_source": "template_fallback", "summary_error": exc.code})
    return analysis.model_copy(update={"summary": result.answer.text, "summary_source": provider.registry_name})
