"""FastAPI dependencies of the jobs domain: the service and ``OwnedJob``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import NotFound
from tradepilot.core.ownership import ownership_dependency
from tradepilot.identity.deps import CurrentUser
from tradepilot.jobs.models import Job
from tradepilot.jobs.setup import JobsService


def get_jobs(runtime: RuntimeDep) -> JobsService:
    return runtime.services["jobs"]  # type: ignore[no-any-return]


Jobs = Annotated[JobsService, Depends(get_jobs)]


@ownership_dependency
async def owned_job(job_id: uuid.UUID, user: CurrentUser, db: DbSession, jobs: Jobs) -> Job:
    """The caller's job; 404 alike for a missing id and for another user's (or a system) job."""
    job = await jobs.get(db, job_id)
    if job is None or job.user_id != user.id:
        raise NotFound("Job not found.", code="job_not_found")
    return job


OwnedJob = Annotated[Job, Depends(owned_job)]
