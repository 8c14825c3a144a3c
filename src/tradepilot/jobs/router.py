"""HTTP edge of the jobs domain: a job's status, and cancelling it."""

from __future__ import annotations

from fastapi import Response, status

from tradepilot.core.deps import DbSession
from tradepilot.core.routing import api_router
from tradepilot.jobs.deps import Jobs, OwnedJob
from tradepilot.jobs.models import JobStatus
from tradepilot.jobs.schemas import JobOut

router = api_router(prefix="/api/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut, summary="A job's status, progress and result")
async def get_job(job: OwnedJob) -> JobOut:
    return JobOut.model_validate(job)


@router.delete(
    "/{job_id}",
    response_model=JobOut,
    summary="Cancel a job",
    responses={202: {"description": "Running: it stops at its next progress report", "model": JobOut},
               409: {"description": "The job has already finished (code job_finished)"}},
)
async def cancel_job(job: OwnedJob, db: DbSession, jobs: Jobs, response: Response) -> JobOut:
    """A queued job is cancelled at once (200); a running one is asked to stop (202)."""
    job = await jobs.cancel(db, job)
    await db.commit()
    if job.status == JobStatus.RUNNING:
        response.status_code = status.HTTP_202_ACCEPTED
    return JobOut.model_validate(job)
