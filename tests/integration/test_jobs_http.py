"""GET and DELETE /api/jobs/{id} through the app: owner-only, 404 alike for others and missing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from tests.helpers import bearer, new_user
from tests.integration.jobs_support import jobs_of, load_job, wait_until
from tradepilot.jobs.models import JobStatus
from tradepilot.runtime import Runtime


async def _job_for(runtime: Runtime, user_id: str | None, kind: str = "test.echo", **kw: Any) -> uuid.UUID:
    async with runtime.db.transaction() as session:
        job = await jobs_of(runtime).enqueue(session, kind=kind, payload={"secret": "not for the API"},
                                             user_id=uuid.UUID(user_id) if user_id else None, **kw)
    return job.id


async def test_the_owner_sees_status_progress_and_result(client: httpx.AsyncClient, runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    job_id = await _job_for(runtime, profile["id"])
    await jobs_of(runtime).drain()
    resp = await client.get(f"/api/jobs/{job_id}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == str(job_id) and body["kind"] == "test.echo" and body["status"] == "succeeded"
    assert body["progress"] == 1.0 and body["attempts"] == 1 and body["error"] is None
    assert body["result"] == {"echo": {"secret": "not for the API"}, "attempt": 1}
    assert "payload" not in body and "worker_id" not in body
    assert body["finished_at"].endswith("Z") or body["finished_at"].endswith("+00:00")


async def test_other_users_jobs_and_missing_ids_are_404_alike(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner, _ = await new_user(client)
    _, intruder = await new_user(client)
    theirs = await _job_for(runtime, owner["id"], run_after=runtime.clock.now() + timedelta(hours=1))
    system = await _job_for(runtime, None, run_after=runtime.clock.now() + timedelta(hours=1))
    answers = []
    for job_id in (theirs, system, uuid.uuid4()):
        for method in ("GET", "DELETE"):
            resp = await client.request(method, f"/api/jobs/{job_id}", headers=bearer(intruder))
            assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"
            answers.append({k: v for k, v in resp.json().items() if k != "request_id"})
    assert all(a == answers[0] for a in answers) and answers[0]["code"] == "job_not_found"
    assert (await load_job(runtime, theirs)).status == JobStatus.QUEUED  # the DELETE did nothing
    assert (await client.get(f"/api/jobs/{theirs}")).status_code == 401
    malformed = await client.get("/api/jobs/not-a-uuid", headers=bearer(intruder))
    assert malformed.status_code == 422


async def test_delete_cancels_a_queued_job_then_conflicts(client: httpx.AsyncClient, runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    job_id = await _job_for(runtime, profile["id"], run_after=runtime.clock.now() + timedelta(hours=1))
    resp = await client.delete(f"/api/jobs/{job_id}", headers=bearer(tokens))
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert (await load_job(runtime, job_id)).status == JobStatus.CANCELLED
    again = await client.delete(f"/api/jobs/{job_id}", headers=bearer(tokens))
    assert again.status_code == 409 and again.json()["code"] == "job_finished"


async def test_delete_asks_a_running_job_to_stop(client: httpx.AsyncClient, runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    job_id = await _job_for(runtime, profile["id"], kind="test.loop")

    async def running() -> bool:
        return (await load_job(runtime, job_id)).progress > 0

    await wait_until(running)
    resp = await client.delete(f"/api/jobs/{job_id}", headers=bearer(tokens))
    assert resp.status_code == 202
    assert resp.json()["status"] == "running" and resp.json()["cancel_requested"] is True

    async def cancelled() -> bool:
        body = (await client.get(f"/api/jobs/{job_id}", headers=bearer(tokens))).json()
        return body["status"] == "cancelled"

    await wait_until(cancelled, timeout=5)
