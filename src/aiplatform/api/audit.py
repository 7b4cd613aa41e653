"""/api/v2/audit: who did what, when, from where — read straight from the event log, whose
metadata is the audit trail. Admins see everything; others see the events of the projects in
which they hold `audit:read` (owners do)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, QueryParameter

from aiplatform.api.envelope import Envelope, Limit, Page, paginated
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import Principal, provide_principal
from aiplatform.api.history import history_event
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUDIT_READ, AUTHENTICATED
from aiplatform.eventstore.store import record_from_row

RESOURCE_TYPES = ("project", "user", "role", "experiment", "dataset", "model", "job", "inbox")


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    recorded_at: datetime
    type: str
    resource_type: str
    resource_id: str
    version: int
    actor_id: str
    actor_username: str | None
    client_ip: str | None
    user_agent: str | None
    request_id: str | None
    data: dict[str, Any]


async def _readable_streams(services: Services, principal: Principal) -> list[str] | None:
    """None: every stream (admins). Otherwise the streams of the projects the caller may
    audit, and of the experiments, datasets, models and training jobs in them."""
    if principal.is_admin:
        return None
    members = services.projects.read_model.table("project_members")
    rows = await services.pool.fetch(
        f"SELECT project_id, role FROM {members} WHERE user_id = $1", principal.user_id
    )
    projects = [
        row["project_id"]
        for row in rows
        if AUDIT_READ in await services.roles.permissions(row["role"])
    ]
    if not projects:
        return []
    experiments = services.experiments.read_model.table("experiments")
    datasets = services.datasets.read_model.table("datasets")
    jobs = services.jobs.read_model.table("jobs")
    owned = await services.pool.fetch(
        f"SELECT 'experiment-' || id AS stream FROM {experiments} WHERE project_id = ANY($1) "
        f"UNION ALL SELECT 'dataset-' || id FROM {datasets} WHERE project_id = ANY($1) "
        f"UNION ALL SELECT 'job-' || id FROM {jobs} WHERE project_id = ANY($1) "
        "UNION ALL SELECT DISTINCT 'model-' || project_id || '-' || name FROM model_index "
        "WHERE project_id = ANY($1)",
        projects,
    )
    return [f"project-{p}" for p in projects] + [row["stream"] for row in owned]


@get(
    "/",
    operation_id="ListAuditEvents",
    summary="The audit log: events with who, when, from which IP and user agent",
    opt={"permission": AUTHENTICATED},
)
async def list_audit(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    actor_id: Annotated[str | None, QueryParameter(max_length=255)] = None,
    resource_type: Annotated[str | None, QueryParameter(max_length=50)] = None,
    resource_id: Annotated[str | None, QueryParameter(max_length=255)] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    page: Page = 1,
    limit: Limit = 50,
    after: Annotated[
        int | None,
        QueryParameter(
            ge=0, description="a write's position: wait until who-owns-what includes it"
        ),
    ] = None,
) -> Envelope[list[AuditEntry]]:
    if resource_type is not None and resource_type not in RESOURCE_TYPES:
        raise RequestError(
            f"resource_type must be one of {', '.join(RESOURCE_TYPES)}", field="resource_type"
        )
    if resource_id is not None and resource_type is None:
        raise RequestError("resource_id needs resource_type", field="resource_type")
    for read_model in (
        services.projects.read_model,
        services.experiments.read_model,
        services.datasets.read_model,
    ):
        await services.read_after(request, read_model, after)
    streams = await _readable_streams(services, principal)
    if streams == []:
        return paginated([], total=0, page=page, limit=limit)
    prefix = f"{resource_type}-%" if resource_type else None
    exact = f"{resource_type}-{resource_id}" if resource_type and resource_id else None
    where = (
        "($1::text IS NULL OR metadata->>'actor' = $1) "
        "AND ($2::text IS NULL OR stream_id LIKE $2) "
        "AND ($3::text IS NULL OR stream_id = $3) "
        "AND ($4::timestamptz IS NULL OR recorded_at >= $4) "
        "AND ($5::timestamptz IS NULL OR recorded_at < $5) "
        "AND ($6::text[] IS NULL OR stream_id = ANY($6))"
    )
    arguments = (actor_id, prefix, exact, since, until, streams)
    users = services.users.read_model.table("users")
    async with services.pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT e.stream_id, e.stream_version, e.global_position, e.event_id, e.event_type, "
            "e.schema_version, e.data::text AS data, e.metadata::text AS metadata, "
            f"e.recorded_at, u.username FROM events e LEFT JOIN {users} u "
            "ON u.id::text = e.metadata->>'actor' "
            f"WHERE {where} ORDER BY e.global_position DESC LIMIT $7 OFFSET $8",
            *arguments,
            limit,
            (page - 1) * limit,
        )
        total = await connection.fetchval(f"SELECT count(*) FROM events WHERE {where}", *arguments)
    entries = []
    for row in rows:
        shown = history_event(record_from_row(row))
        resource, _, identifier = row["stream_id"].partition("-")
        entries.append(
            AuditEntry(
                position=shown.position,
                recorded_at=shown.recorded_at,
                type=shown.type,
                resource_type=resource,
                resource_id=identifier,
                version=shown.version,
                actor_id=shown.metadata.get("actor", ""),
                actor_username=row["username"],
                client_ip=shown.metadata.get("client_ip"),
                user_agent=shown.metadata.get("user_agent"),
                request_id=shown.metadata.get("request_id"),
                data=shown.data,
            )
        )
    return paginated(entries, total=int(total), page=page, limit=limit)


def audit_router() -> Router:
    return Router(
        path="/audit",
        route_handlers=[list_audit],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["audit"],
    )
