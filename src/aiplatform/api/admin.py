"""/api/v2/admin: the platform's figures (`stats`) and event store migrations (`migrate`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from redis.exceptions import RedisError

from aiplatform.api.context import command_context
from aiplatform.api.envelope import Envelope, ok
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import ADMIN
from aiplatform.domain.event_store import STREAM_ID, EventStoreMigrated
from aiplatform.eventstore.migration_status import Revision, migration_status
from aiplatform.eventstore.migrations import upgrade_to_head_async
from aiplatform.monitoring.records import WorkerBeat
from aiplatform.platform_stats import (
    LogCounts,
    ProjectionLag,
    QueueDepth,
    database_health,
    dramatiq_namespace,
    log_counts,
    projection_lags,
    queue_depths,
    redis_health,
    row_counts,
    workers_alive,
)
from aiplatform.workers.broker import QUEUES

T = TypeVar("T")


class ReadModelStatus(msgspec.Struct, frozen=True, kw_only=True):
    """`active`: the version readers use. `building`: a new version filled from the log beside
    it (after a change of its SQL file), switched in once it has caught up; `progress` is the
    share of the log it has read (0-1)."""

    read_model: str
    active: ProjectionLag | None
    building: ProjectionLag | None
    progress: float | None


class PlatformStats(msgspec.Struct, frozen=True, kw_only=True):
    resources: dict[str, int]
    events: LogCounts
    read_models: list[ReadModelStatus]
    queues: list[QueueDepth]
    workers: list[WorkerBeat]
    database: dict[str, Any]
    redis: dict[str, Any]
    measured_at: datetime


class MigrationReport(msgspec.Struct, frozen=True, kw_only=True):
    from_revision: str | None
    to_revision: str | None
    applied: list[Revision]
    position: int  # of the EventStoreMigrated event that records who ran it


def _resource_tables(services: Services) -> dict[str, str]:
    """Each resource's table in the read model version readers use now."""
    return {
        "projects": services.projects.read_model.table("projects"),
        "experiments": services.experiments.read_model.table("experiments"),
        "datasets": services.datasets.read_model.table("datasets"),
        "models": services.models.read_model.table("models"),
        "jobs": services.jobs.read_model.table("jobs"),
        "users": services.users.read_model.table("users"),
        "roles": services.roles.read_model.table("roles"),
    }


def read_model_statuses(lags: list[ProjectionLag], log_total: int) -> list[ReadModelStatus]:
    by_name: dict[str, dict[str, ProjectionLag]] = {}
    for lag in lags:
        by_name.setdefault(lag.read_model, {})[lag.state] = lag
    statuses = []
    for name, states in sorted(by_name.items()):
        building = states.get("building")
        progress = None
        if building is not None:
            progress = 1.0 if log_total == 0 else 1.0 - building.events_behind / log_total
        statuses.append(
            ReadModelStatus(
                read_model=name,
                active=states.get("active"),
                building=building,
                progress=None if progress is None else round(max(progress, 0.0), 4),
            )
        )
    return statuses


@get(
    "/stats",
    operation_id="GetPlatformStats",
    summary="Counts, log, read-model lag and rebuilds, queues, workers, database and Redis",
    opt={"permission": ADMIN},
)
async def get_stats(services: NamedDependency[Services]) -> Envelope[PlatformStats]:
    redis_client = services.cache.client
    assert redis_client is not None, "the API always has a Redis client"
    namespace = dramatiq_namespace(services.settings.instance)
    resources, events, lags = await asyncio.gather(
        row_counts(services.pool, _resource_tables(services)),
        log_counts(services.pool),
        projection_lags(services.pool),
    )
    queues, workers, database, redis = await asyncio.gather(
        _or_empty(queue_depths(redis_client, namespace, QUEUES)),
        _or_empty(workers_alive(redis_client, services.cache.prefix)),
        database_health(services.pool),
        redis_health(redis_client),
    )
    return ok(
        PlatformStats(
            resources=resources,
            events=events,
            read_models=read_model_statuses(lags, events.total),
            queues=queues,
            workers=workers,
            database=database,
            redis=redis,
            measured_at=datetime.now(UTC),
        )
    )


async def _or_empty(figures: Awaitable[list[T]]) -> list[T]:
    """Queues and workers live in Redis: with Redis down the rest of the figures still show,
    and `redis.ok` says why these are empty."""
    try:
        return await figures
    except (OSError, RedisError):
        return []


@post(
    "/migrate",
    operation_id="MigrateEventStore",
    summary="Apply pending event store migrations; report what was applied",
    opt={"permission": ADMIN},
    status_code=200,
)
async def migrate(
    request: Request[Any, Any, State], services: NamedDependency[Services]
) -> Envelope[MigrationReport]:
    database_url = services.settings.require_database_url()
    before = await migration_status(services.pool, database_url)
    if before.pending:
        await upgrade_to_head_async(database_url)
    after = await migration_status(services.pool, database_url)
    applied = [r for r in before.pending if r.revision not in {p.revision for p in after.pending}]
    recorded = await services.commands.record(
        STREAM_ID,
        [
            EventStoreMigrated(
                from_revision=before.current,
                to_revision=after.current,
                applied=[r.revision for r in applied],
            )
        ],
        await command_context(request),
    )
    return ok(
        MigrationReport(
            from_revision=before.current,
            to_revision=after.current,
            applied=applied,
            position=recorded.last_position,
        )
    )


def admin_router() -> Router:
    return Router(
        path="/admin",
        route_handlers=[get_stats, migrate],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        tags=["admin"],
    )
