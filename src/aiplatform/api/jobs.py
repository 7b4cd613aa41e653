"""/api/v2/training/jobs: reading training jobs — the list, a job, its live status, its log and
its history. Submitting and cancelling are the training routes'."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from litestar import Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ServiceUnavailableException
from litestar.params import FromPath, QueryParameter

from aiplatform.aggregates import PROJECTS
from aiplatform.api.as_of import AsOfParameter, as_of_meta, parse_as_of, past_events
from aiplatform.api.envelope import After, Envelope, Limit, Page, ok, paginated
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import Principal, check_project_permission, provide_principal
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.owners import owning_project
from aiplatform.api.past_jobs import past_job
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUTHENTICATED, PROJECT_READ
from aiplatform.domain import jobs as domain
from aiplatform.projectors.progress import wait_until_projected
from aiplatform.queries.jobs import JobFilters, JobStatusView, JobView, LogLineView

T = TypeVar("T")

JobStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
# A log is read in longer pages than other lists: a screenful of a training log is hundreds of
# lines.
MAX_LOG_PAGE = 1000


async def require_project_permission(
    services: Services, principal: Principal, project_id: uuid.UUID, permission: str
) -> None:
    """For routes whose guard cannot see the project (it is optional, or named by a job in the
    query string): the caller holds `permission` in it; 404 when they cannot even read it."""
    project = await services.commands.current_state(PROJECTS, str(project_id))
    members = None if project is None or project.deleted else project.members
    await check_project_permission(services, principal, members, str(project_id), permission)


async def require_job_permission(
    services: Services, principal: Principal, job_id: uuid.UUID, permission: str
) -> None:
    """The caller holds `permission` in the job's project; 404 for a job that does not exist or
    that they cannot see."""
    project_id = await owning_project(services, "job_id", job_id)
    await require_project_permission(services, principal, project_id, permission)


async def once_projected(
    services: Services, job_id: uuid.UUID, read: Callable[[], Awaitable[T | None]]
) -> T:
    """`read()` of a job whose stream exists (the guard found it). A miss means the projector has
    not applied the submission yet: waits for it as a read-your-writes read would, then says
    so rather than calling an existing job missing."""
    found = await read()
    if found is not None:
        return found
    position = await services.pool.fetchval(
        "SELECT global_position FROM events WHERE stream_id = $1 AND stream_version = 1",
        domain.stream_id(str(job_id)),
    )
    if position is None:
        raise domain.JobNotFoundError(str(job_id))
    await wait_until_projected(
        services.pool,
        services.jobs.read_model,
        position,
        services.settings.read_your_writes_timeout_s,
    )
    found = await read()
    if found is None:
        raise ServiceUnavailableException(
            f"job {job_id} was submitted but is not readable yet; retry in a moment"
        )
    return found


def _stale_if(waited: bool | None, meta: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Marks an answer served before the write it waited for was readable."""
    return {**(meta or {}), "stale": True} if waited is False else meta


@get(
    "/",
    operation_id="ListJobs",
    summary="List training jobs, newest first",
    description="Jobs of the projects the caller is a member of (admins: all). With "
    "`project_id`, only that project's, which needs project:read in it.",
    opt={"permission": AUTHENTICATED},
)
async def list_jobs(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    status: Annotated[JobStatus | None, QueryParameter()] = None,
    project_id: Annotated[uuid.UUID | None, QueryParameter(description="the project")] = None,
    template: Annotated[str | None, QueryParameter(min_length=1, max_length=100)] = None,
    experiment_id: Annotated[
        uuid.UUID | None, QueryParameter(description="only the jobs this experiment started")
    ] = None,
    page: Page = 1,
    limit: Limit = 20,
    after: After = None,
) -> Envelope[list[JobView]]:
    if project_id is not None:
        await require_project_permission(services, principal, project_id, PROJECT_READ)
    waited = await services.read_after(request, services.jobs.read_model, after)
    filters = JobFilters(
        status=status,
        project_id=project_id,
        template=template,
        experiment_id=experiment_id,
        member_id=None if principal.is_admin else principal.user_id,
        page=page,
        limit=limit,
    )
    items, total = await services.jobs.list(filters)
    envelope = paginated(items, total=total, page=page, limit=limit)
    if waited is False and envelope.meta is not None:
        envelope.meta["stale"] = True
    return envelope


@get(
    "/{job_id:uuid}",
    operation_id="GetJob",
    summary="Get a training job",
    opt={"permission": PROJECT_READ},
)
async def get_job(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    job_id: FromPath[uuid.UUID],
    after: After = None,
    as_of: AsOfParameter = None,
) -> Response[Envelope[JobView]]:
    """With `as_of`, the job as its stream folds to then."""
    past = parse_as_of(as_of)
    if past is not None:
        events = await past_events(
            services.store, domain.stream_id(str(job_id)), past, f"job {job_id}"
        )
        job_then = past_job(events)
        if job_then is None:
            raise domain.JobNotFoundError(str(job_id))
        return Response(ok(job_then, as_of_meta(past, events)))
    waited = await services.read_after(request, services.jobs.read_model, after)
    job = await once_projected(services, job_id, lambda: services.jobs.get(job_id))
    return Response(ok(job, _stale_if(waited)), headers={"ETag": f'"{job.version}"'})


@get(
    "/{job_id:uuid}/status",
    operation_id="GetJobStatus",
    summary="A training job's progress: status, steps, ETA, throughput and latest metrics",
    description="`eta_s` is the time to the last step at the rate the current attempt has "
    "kept since it started; null while the job is not running or has not progressed yet.",
    opt={"permission": PROJECT_READ},
)
async def get_job_status(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    job_id: FromPath[uuid.UUID],
    after: After = None,
) -> Envelope[JobStatusView]:
    waited = await services.read_after(request, services.jobs.read_model, after)
    fresh = waited is not None
    view = await once_projected(services, job_id, lambda: services.jobs.status(job_id, fresh=fresh))
    return ok(view, _stale_if(waited))


@get(
    "/{job_id:uuid}/logs",
    operation_id="GetJobLogs",
    summary="A training job's log lines, oldest first",
    description=f"Pages by `page` and `limit`, or follows a live log with `after_seq` (the "
    f"`seq` of the last line already read; `meta.next_after_seq` is the next one to pass). "
    f"`limit` is 1-{MAX_LOG_PAGE} lines (default 100).",
    opt={"permission": PROJECT_READ},
)
async def get_job_logs(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    job_id: FromPath[uuid.UUID],
    page: Annotated[int | None, QueryParameter(ge=1, description="page number, from 1")] = None,
    after_seq: Annotated[
        int | None, QueryParameter(ge=0, description="only lines after this `seq`")
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LOG_PAGE)] = 100,
    after: After = None,
) -> Envelope[list[LogLineView]]:
    if page is not None and after_seq is not None:
        raise RequestError("give `page` or `after_seq`, not both", field="after_seq")
    waited = await services.read_after(request, services.jobs.read_model, after)
    start = after_seq if after_seq is not None else ((page or 1) - 1) * limit
    lines, total = await services.jobs.logs(job_id, after_seq=start, limit=limit)
    meta: dict[str, Any] = {
        "total": total,
        "limit": limit,
        "has_more": start + len(lines) < total,
        "next_after_seq": lines[-1].seq if lines else start,
    }
    if after_seq is None:
        meta["page"] = page or 1
    return ok(lines, _stale_if(waited, meta))


@get(
    "/{job_id:uuid}/history",
    operation_id="GetJobHistory",
    summary="A training job's events, oldest first",
    opt={"permission": PROJECT_READ},
)
async def job_history(
    services: NamedDependency[Services],
    job_id: FromPath[uuid.UUID],
    page: Page = 1,
    limit: Limit = 50,
) -> Envelope[list[HistoryEvent]]:
    return await history_page(services.store, domain.stream_id(str(job_id)), page, limit)


def jobs_router() -> Router:
    return Router(
        path="/training/jobs",
        route_handlers=[list_jobs, get_job, get_job_status, get_job_logs, job_history],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["training"],
    )
