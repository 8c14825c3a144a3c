"""/api/ai: the user's active model per task, custom prompts to the LLM and their audit (docs/ai.md).

Choosing a model changes the account, so it needs the ``trade`` scope like every other
change; asking the LLM and reading the audit need ``read``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Depends, Query
from sqlalchemy import select

from tradepilot.ai.active_models import active_models, set_active_model
from tradepilot.ai.custom_prompt import ask
from tradepilot.ai.llm_models import LLMCall
from tradepilot.ai.llm_schemas import (
    ActiveModelList,
    ActiveModelOut,
    ActiveModelSet,
    CustomPrompt,
    CustomPromptAnswer,
    LLMCallOut,
    LLMCallPage,
)
from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import NotFound
from tradepilot.core.ownership import ownership_dependency
from tradepilot.core.pagination import time_keyset_page
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import CurrentUser
from tradepilot.market.deps import Market
from tradepilot.strategies.deps import ReadUser, TradeUser

router = api_router(prefix="/api/ai", tags=["ai"])


async def _active(runtime: RuntimeDep, db: DbSession, user_id: uuid.UUID) -> ActiveModelList:
    found = await active_models(db, runtime.settings, user_id)
    return ActiveModelList(items=[ActiveModelOut(task=c.task, model=c.model, source=c.source, choices=list(c.choices))
                                  for c in found])


@router.get("/models/active", response_model=ActiveModelList)
async def get_active_models(principal: ReadUser, db: DbSession, runtime: RuntimeDep) -> ActiveModelList:
    """Your model per task (``direction``, ``sentiment``, ``summary``, ``chat``), whether it is
    your choice or the default, and what you can choose from."""
    return await _active(runtime, db, principal.id)


@router.put("/models/active", response_model=ActiveModelList)
async def put_active_model(body: ActiveModelSet, principal: TradeUser, db: DbSession,
                           runtime: RuntimeDep) -> ActiveModelList:
    """Choose the model for one task; 422 ``unknown_model`` for a model this server does not
    offer for that task (e.g. ``llm:<name>`` of a provider the operator has not configured)."""
    await set_active_model(db, runtime.settings, principal.id, body.task, body.model, runtime.clock.now())
    await db.commit()
    return await _active(runtime, db, principal.id)


@router.post("/custom-prompt", response_model=CustomPromptAnswer,
             responses={429: {"description": "ai_quota_exceeded (the plan's ai_calls_per_day), with Retry-After"},
                        502: {"description": "llm_unavailable / llm_bad_answer"},
                        503: {"description": "llm_not_configured / llm_rate_limited (with Retry-After)"},
                        504: {"description": "llm_timeout"}})
async def custom_prompt(body: CustomPrompt, principal: ReadUser, db: DbSession, market: Market,
                        runtime: RuntimeDep) -> CustomPromptAnswer:
    """Your prompt to your active ``chat`` LLM, with the requested symbols' last prices and
    indicators and your positions and balances sent beside it as data. The answer is
    informational: nothing is done with it. One of your plan's AI calls per UTC day."""
    return await ask(runtime, db, market, principal, body)


@router.get("/llm-calls", response_model=LLMCallPage)
async def list_llm_calls(principal: ReadUser, db: DbSession,
                         purpose: Literal["custom_prompt", "summary"] | None = None,
                         limit: Annotated[int, Query(ge=1, le=200)] = 50,
                         cursor: Annotated[str | None, Query(max_length=200)] = None) -> LLMCallPage:
    """The audit of your LLM calls, newest first: provider, model, prompt size and SHA-256,
    tokens, latency and outcome (never the prompt's text)."""
    query = select(LLMCall).where(LLMCall.user_id == principal.id)
    if purpose is not None:
        query = query.where(LLMCall.purpose == purpose)
    rows, next_cursor = await time_keyset_page(db, query, LLMCall.created_at, LLMCall.id, limit=limit, cursor=cursor)
    return LLMCallPage(items=[LLMCallOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@ownership_dependency
async def owned_llm_call(call_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> LLMCall:
    found = await db.get(LLMCall, call_id)
    if found is None or found.user_id != principal.id:
        raise NotFound("LLM call not found.", code="llm_call_not_found")
    return found


@router.get("/llm-calls/{call_id}", response_model=LLMCallOut)
async def get_llm_call(_: ReadUser, call: Annotated[LLMCall, Depends(owned_llm_call)]) -> LLMCallOut:
    """One of your LLM calls' audit record; another user's id answers 404."""
    return LLMCallOut.model_validate(call)
