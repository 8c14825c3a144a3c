"""The ``Idempotency`` dependency: a signed-in caller's ``Idempotency-Key`` on a mutating route.

A route that changes something takes ``idem: Idempotency`` and ends like this::

    if idem.replay is not None:
        return idem.replay
    async with runtime.db.transaction() as session:
        order = await service.place(session, ...)
        return await idem.respond(session, OrderOut.of(order), status=201)

Declare ``idem`` before parameters that open the request's ``DbSession`` (an owned-resource
dependency, say): the claim commits in its own transaction first, which on SQLite must not
wait behind the request's own write transaction. The dependency refuses the wrong order.

``respond`` stores the answer in the same transaction as the change (see
``core.idempotency``); if the route raises instead, the claim is released when the
dependency exits, so the key may be retried. Without the header the dependency does nothing.
Records are pruned hourly by the ``core.idempotency_prune`` job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core import idempotency as store
from tradepilot.core.deps import DB_OPENED_KEY, RuntimeDep
from tradepilot.identity.deps import CurrentUser
from tradepilot.jobs.registry import JobContext, job_handler
from tradepilot.jobs.scheduler import schedule
from tradepilot.runtime import Runtime

PRUNE_JOB = "core.idempotency_prune"
PRUNE_SCHEDULE = schedule(PRUNE_JOB, "41 * * * *", PRUNE_JOB)  # hourly: records live 24-25 h


class IdempotentRequest:
    """What a route needs: the stored answer to replay, or a way to store its own."""

    def __init__(self, runtime: Runtime, claim: store.IdempotencyClaim | None,
                 replay: store.StoredResponse | None) -> None:
        self._runtime = runtime
        self._claim = claim
        self.replay: Response | None = None
        if replay is not None:
            self.replay = Response(content=replay.body, status_code=replay.status,
                                   headers=store.replay_headers(replay))

    @property
    def claim(self) -> store.IdempotencyClaim | None:
        return self._claim

    async def respond(self, session: AsyncSession, content: BaseModel, *, status: int = 200,
                      headers: dict[str, str] | None = None) -> Response:
        """Render ``content`` as the answer and, with a key, store it in ``session``'s transaction."""
        body = content.model_dump_json(by_alias=True).encode()
        all_headers = {"content-type": "application/json", **(headers or {})}
        if self._claim is not None:
            await self._claim.complete(session, status=status, body=body, headers=all_headers,
                                       now=self._runtime.clock.now())
        return Response(content=body, status_code=status, headers=all_headers)


async def get_idempotency(request: Request, principal: CurrentUser,
                          runtime: RuntimeDep) -> AsyncIterator[IdempotentRequest]:
    if request.scope.get("state", {}).get(DB_OPENED_KEY):
        # on SQLite the request's own open write transaction would block the claim's commit
        raise RuntimeError("declare the Idempotency dependency before any that opens the request's DbSession")
    raw = request.headers.get(store.HEADER)
    if raw is None:
        yield IdempotentRequest(runtime, None, None)
        return
    route = request.scope.get("route")
    scope = store.IdempotencyScope(
        owner=f"user:{principal.id}", method=request.method,
        route=str(getattr(route, "path", request.url.path)), key=store.validate_key(raw),
        fingerprint=store.request_fingerprint(await request.body()))
    outcome = await store.claim(runtime.db, runtime.clock, scope)
    if isinstance(outcome, store.StoredResponse):
        yield IdempotentRequest(runtime, None, outcome)
        return
    try:
        yield IdempotentRequest(runtime, outcome, None)
    except BaseException:
        # also after complete(): the route's transaction may have rolled back with it
        await store.release(runtime.db, outcome)
        raise
    if not outcome.completed:
        await store.release(runtime.db, outcome)


Idempotency = Annotated[IdempotentRequest, Depends(get_idempotency)]


@job_handler(PRUNE_JOB)
async def prune_idempotency_records(ctx: JobContext, payload: dict[str, object]) -> dict[str, int]:
    return {"deleted": await store.prune(ctx.runtime.db, ctx.runtime.clock)}
