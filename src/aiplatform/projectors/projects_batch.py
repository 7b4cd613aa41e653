"""The projects read model applied a batch at a time: the batch's projects are read once,
folded in Python, and written back with one `DELETE` and one `COPY` per table. It leaves
the tables exactly as `ProjectsProjector.apply` does event by event (a test compares them);
rebuilds use it, because a round trip per event is what makes a row-by-row rebuild slow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from aiplatform.domain.projects import (
    MemberGranted,
    MemberRevoked,
    ProjectArchived,
    ProjectCreated,
    ProjectDeleted,
    ProjectRestored,
    ProjectUpdated,
)
from aiplatform.projectors.read_models import ReadModel
from aiplatform.projectors.runner import BatchEvent, cyclic_gc_paused

_json = msgspec.json.Encoder()

PROJECT_COLUMNS = (
    "id",
    "name",
    "description",
    "config",
    "tags",
    "status",
    "owner_id",
    "version",
    "created_at",
    "updated_at",
    "last_position",
)
MEMBER_COLUMNS = ("project_id", "user_id", "role", "granted_at")


@dataclass
class _Project:
    name: str
    description: str
    config: str  # JSON text, as the jsonb column takes it
    tags: str
    status: str
    owner_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    last_position: int

    def touch(self, recorded: BatchEvent) -> None:
        self.version = recorded.stream_version
        self.updated_at = recorded.recorded_at
        self.last_position = recorded.global_position


class _Batch:
    """The batch's projects and memberships, as the tables hold them after each event."""

    def __init__(self) -> None:
        # Keyed by the id's text: parsing 2 UUIDs per event would cost more than the fold.
        self.projects: dict[str, _Project] = {}
        self.members: dict[tuple[str, str], tuple[str, datetime]] = {}

    def apply(self, recorded: BatchEvent) -> None:
        event = recorded.event
        project_id: str = event.project_id  # type: ignore[attr-defined]
        project = self.projects.get(project_id)
        match event:
            case ProjectCreated():
                self.projects[project_id] = _Project(
                    name=event.name,
                    description=event.description,
                    config=_json.encode(event.config).decode(),
                    tags=_json.encode(event.tags).decode(),
                    status="active",
                    owner_id=event.owner_id,
                    version=recorded.stream_version,
                    created_at=recorded.recorded_at,
                    updated_at=recorded.recorded_at,
                    last_position=recorded.global_position,
                )
                self.members[(project_id, event.owner_id)] = ("owner", recorded.recorded_at)
            case ProjectUpdated():
                if project is not None:
                    if not isinstance(event.name, msgspec.UnsetType):
                        project.name = event.name
                    if not isinstance(event.description, msgspec.UnsetType):
                        project.description = event.description
                    if not isinstance(event.config, msgspec.UnsetType):
                        project.config = _json.encode(event.config).decode()
                    if not isinstance(event.tags, msgspec.UnsetType):
                        project.tags = _json.encode(event.tags).decode()
                    project.touch(recorded)
            case ProjectArchived() | ProjectRestored():
                if project is not None:
                    project.status = "archived" if isinstance(event, ProjectArchived) else "active"
                    project.touch(recorded)
            case ProjectDeleted():
                self.projects.pop(project_id, None)
                for key in [key for key in self.members if key[0] == project_id]:
                    del self.members[key]
            case MemberGranted():
                self.members[(project_id, event.user_id)] = (event.role, recorded.recorded_at)
                if project is not None:
                    project.touch(recorded)
            case MemberRevoked():
                self.members.pop((project_id, event.user_id), None)
                if project is not None:
                    project.touch(recorded)


async def apply_projects_batch(
    connection: asyncpg.Connection, read_model: ReadModel, events: Sequence[BatchEvent]
) -> None:
    if not events:
        return
    ids = {e.event.project_id for e in events}  # type: ignore[attr-defined]
    # A project created in this batch has no rows from earlier ones (creation is the first
    # event of its stream): only the others are read, and replaced.
    created = {e.event.project_id for e in events if isinstance(e.event, ProjectCreated)}
    batch = await _load(connection, read_model, list(ids - created))
    existing = list(batch.projects.keys() | {project_id for project_id, _ in batch.members})
    with cyclic_gc_paused():
        for recorded in events:
            batch.apply(recorded)
        projects = [_project_record(pid, p) for pid, p in batch.projects.items()]
        members = [(pid, user, role, at) for (pid, user), (role, at) in batch.members.items()]
    schema = read_model.schema
    if existing:
        await connection.execute(
            f"DELETE FROM {schema}.projects WHERE id = ANY($1::uuid[])", existing
        )
        await connection.execute(
            f"DELETE FROM {schema}.project_members WHERE project_id = ANY($1::uuid[])", existing
        )
    if projects:
        await connection.copy_records_to_table(
            "projects", schema_name=schema, columns=PROJECT_COLUMNS, records=projects
        )
    if members:
        await connection.copy_records_to_table(
            "project_members", schema_name=schema, columns=MEMBER_COLUMNS, records=members
        )


def _project_record(project_id: str, p: _Project) -> tuple[Any, ...]:
    return (
        project_id,
        p.name,
        p.description,
        p.config,
        p.tags,
        p.status,
        p.owner_id,
        p.version,
        p.created_at,
        p.updated_at,
        p.last_position,
    )


async def _load(connection: asyncpg.Connection, read_model: ReadModel, ids: list[str]) -> _Batch:
    """The rows the batch's projects have before it (from earlier batches)."""
    batch = _Batch()
    if not ids:
        return batch
    rows = await connection.fetch(
        "SELECT id, name, description, config::text AS config, tags::text AS tags, status, "
        "owner_id, version, created_at, updated_at, last_position "
        f"FROM {read_model.table('projects')} WHERE id = ANY($1::uuid[])",
        ids,
    )
    for row in rows:
        batch.projects[str(row[0])] = _Project(*row[1:])
    members = await connection.fetch(
        "SELECT project_id, user_id, role, granted_at "
        f"FROM {read_model.table('project_members')} WHERE project_id = ANY($1::uuid[])",
        ids,
    )
    for project_id, user_id, role, granted_at in members:
        batch.members[(str(project_id), user_id)] = (role, granted_at)
    return batch
