"""Which model a user has chosen per task, checked against what this install offers.

Tasks: ``direction`` (the predictions and the prediction inside analyze-market),
``sentiment``, ``summary`` (analyze-market's readable summary: the template or an LLM) and
``chat`` (custom prompts: an LLM). The choices come from the registry — built-in models and
the operator's LLM providers — so a user can only name something that exists. A stored
choice whose provider the operator has since removed falls back to the task's default.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.llm_models import ActiveModel
from tradepilot.ai.llm_settings import LLMProvider
from tradepilot.config import Settings
from tradepilot.core.errors import Unprocessable

Task = Literal["direction", "sentiment", "summary", "chat"]
TASKS: tuple[Task, ...] = ("direction", "sentiment", "summary", "chat")
SUMMARY_TEMPLATE = "summary-template"
LLM_PREFIX = "llm:"
BUILT_IN: dict[str, tuple[str, ...]] = {
    "direction": ("direction-lightgbm",),
    "sentiment": ("sentiment-tfidf-vader",),
    "summary": (SUMMARY_TEMPLATE,),
    "chat": (),
}


@dataclass(frozen=True)
class Choice:
    task: str
    model: str | None  # None: no model can serve the task (chat without a configured LLM)
    source: str  # "user": the user's choice; "default"
    choices: tuple[str, ...]


def choices(settings: Settings) -> dict[str, tuple[str, ...]]:
    llms = tuple(p.registry_name for p in settings.llm_providers)
    return {task: BUILT_IN[task] + (llms if task in ("summary", "chat") else ()) for task in TASKS}


def default_for(settings: Settings, task: str) -> str | None:
    offered = choices(settings)[task]
    return offered[0] if offered else None


def provider_of(settings: Settings, model: str | None) -> LLMProvider | None:
    """The provider behind an ``llm:<name>`` model, if it is configured."""
    if not model or not model.startswith(LLM_PREFIX):
        return None
    name = model.removeprefix(LLM_PREFIX)
    return next((p for p in settings.llm_providers if p.name == name), None)


async def active_models(session: AsyncSession, settings: Settings, user_id: uuid.UUID) -> list[Choice]:
    stored = dict((await session.execute(select(ActiveModel.task, ActiveModel.model)
                                         .where(ActiveModel.user_id == user_id))).all())
    offered = choices(settings)
    out = []
    for task in TASKS:
        mine = stored.get(task)
        if mine is not None and mine in offered[task]:
            out.append(Choice(task, mine, "user", offered[task]))
        else:
            out.append(Choice(task, default_for(settings, task), "default", offered[task]))
    return out


async def active_model(session: AsyncSession, settings: Settings, user_id: uuid.UUID, task: str) -> str | None:
    return next(c.model for c in await active_models(session, settings, user_id) if c.task == task)


async def set_active_model(session: AsyncSession, settings: Settings, user_id: uuid.UUID, task: str,
                           model: str, now: datetime) -> None:
    """Store the user's choice for ``task`` (in the caller's transaction); 422
    ``unknown_model`` for a model this install does not offer for that task."""
    offered = choices(settings)[task]
    if model not in offered:
        listed = ", ".join(offered) or "none: no LLM provider is configured"
        raise Unprocessable(f"'{model}' is not a {task} model here; choose one of: {listed}.",
                            code="unknown_model", extra={"task": task, "choices": list(offered)})
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(insert(ActiveModel).values(user_id=user_id, task=task, model=model, updated_at=now)
                          .on_conflict_do_update(index_elements=[ActiveModel.user_id, ActiveModel.task],
                                                 set_={"model": model, "updated_at": now}))  # two PUTs at once: no 500
