"""Projects read model: `projections/projects.sql` filled from `project-*` streams."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from aiplatform.cache import TTL_PROJECT, Cache
from aiplatform.domain.projects import (
    MemberGranted,
    MemberRevoked,
    ProjectArchived,
    ProjectCreated,
    ProjectDeleted,
    ProjectRestored,
    ProjectUpdated,
)
from aiplatform.eventstore.codec import Event, RecordedEvent
from aiplatform.projectors.projects_batch import apply_projects_batch
from aiplatform.projectors.read_models import ReadModel, load_read_model
from aiplatform.projectors.set_wise import BatchEvent

_json = msgspec.json.Encoder()


class ChangeMessage(msgspec.Struct, frozen=True):
    """What subscribers of `project:<id>` receive: enough to refetch, not the resource."""

    position: int
    stream_id: str
    version: int
    type: str


def project_key(cache: Cache, read_model: ReadModel, project_id: str) -> str:
    return cache.key("projects", read_model.version, "project", project_id)


def list_generation_key(cache: Cache, read_model: ReadModel) -> str:
    return cache.key("projects", read_model.version, "list-generation")


class ProjectsProjector:
    event_types = frozenset(
        cls.__name__
        for cls in (
            ProjectCreated,
            ProjectUpdated,
            ProjectArchived,
            ProjectRestored,
            ProjectDeleted,
            MemberGranted,
            MemberRevoked,
        )
    )

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("projects")
        self.table = self.read_model.table("projects")
        self.members = self.read_model.table("project_members")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case ProjectCreated():
                await connection.execute(
                    f"INSERT INTO {self.table} (id, name, description, config, tags, status, "
                    "owner_id, version, created_at, updated_at, last_position) "
                    "VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, 'active', $6, $7, "
                    "$8, $8, $9)",
                    event.project_id,
                    event.name,
                    event.description,
                    _json.encode(event.config).decode(),
                    _json.encode(event.tags).decode(),
                    event.owner_id,
                    recorded.stream_version,
                    recorded.recorded_at,
                    recorded.global_position,
                )
                await connection.execute(
                    f"INSERT INTO {self.members} (project_id, user_id, role, granted_at) "
                    "VALUES ($1, $2, 'owner', $3)",
                    event.project_id,
                    event.owner_id,
                    recorded.recorded_at,
                )
            case ProjectUpdated():
                await connection.execute(
                    f"UPDATE {self.table} SET "
                    "name = coalesce($2, name), description = coalesce($3, description), "
                    "config = coalesce($4::text::jsonb, config), "
                    "tags = coalesce($5::text::jsonb, tags), "
                    "version = $6, updated_at = $7, last_position = $8 WHERE id = $1",
                    event.project_id,
                    _set_or_none(event.name),
                    _set_or_none(event.description),
                    _json_or_none(event.config),
                    _json_or_none(event.tags),
                    recorded.stream_version,
                    recorded.recorded_at,
                    recorded.global_position,
                )
            case ProjectArchived() | ProjectRestored():
                await connection.execute(
                    f"UPDATE {self.table} SET status = $2, version = $3, updated_at = $4, "
                    "last_position = $5 WHERE id = $1",
                    event.project_id,
                    "archived" if isinstance(event, ProjectArchived) else "active",
                    recorded.stream_version,
                    recorded.recorded_at,
                    recorded.global_position,
                )
            case ProjectDeleted():
                await connection.execute(
                    f"DELETE FROM {self.table} WHERE id = $1", event.project_id
                )
                await connection.execute(
                    f"DELETE FROM {self.members} WHERE project_id = $1", event.project_id
                )
            case MemberGranted():
                await connection.execute(
                    f"INSERT INTO {self.members} (project_id, user_id, role, granted_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (project_id, user_id) "
                    "DO UPDATE SET role = excluded.role, granted_at = excluded.granted_at",
                    event.project_id,
                    event.user_id,
                    event.role,
                    recorded.recorded_at,
                )
                await self._touch(connection, recorded)
            case MemberRevoked():
                await connection.execute(
                    f"DELETE FROM {self.members} WHERE project_id = $1 AND user_id = $2",
                    event.project_id,
                    event.user_id,
                )
                await self._touch(connection, recorded)

    async def apply_batch(
        self, connection: asyncpg.Connection, events: Sequence[BatchEvent[Event]]
    ) -> None:
        await apply_projects_batch(connection, self.read_model, events)

    async def _touch(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        """Membership is part of the project: its version moves with every member change."""
        await connection.execute(
            f"UPDATE {self.table} SET version = $2, updated_at = $3, last_position = $4 "
            "WHERE id = $1",
            recorded.event.project_id,  # type: ignore[attr-defined]
            recorded.stream_version,
            recorded.recorded_at,
            recorded.global_position,
        )

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        await cache.mark_stale(
            {
                project_key(cache, self.read_model, e.event.project_id): e.stream_version  # type: ignore[attr-defined]
                for e in events
            },
            TTL_PROJECT,
        )
        await cache.bump(list_generation_key(cache, self.read_model))
        for recorded in events:
            project_id = recorded.event.project_id  # type: ignore[attr-defined]
            message = ChangeMessage(
                position=recorded.global_position,
                stream_id=recorded.stream_id,
                version=recorded.stream_version,
                type=recorded.event_type,
            )
            await cache.publish(f"project:{project_id}", _json.encode(message))


def _set_or_none(value: str | msgspec.UnsetType) -> str | None:
    return None if isinstance(value, msgspec.UnsetType) else value


def _json_or_none(value: object) -> str | None:
    return None if value is msgspec.UNSET else _json.encode(value).decode()
