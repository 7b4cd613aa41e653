"""The projects read model applied a batch at a time: the batch's projects are read once,
folded in Python, and written back with one `DELETE` and one `COPY` per table. It leaves
the tables exactly as `ProjectsProjector.apply` does event by event (a test compares them);
rebuilds use it, because a round trip per event is what makes a row-by-row rebuild slow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from aiplatform.eventstore.codec import Event
from aiplatform.projectors.read_models import ReadModel
from aiplatform.projectors.runner import cyclic_gc_paused
from aiplatform.projectors.set_wise import BatchEvent, datetime_of

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


@dataclass(slots=True)
class _Project:
    name: str
    description: str
    config: str  # JSON text, as the jsonb column takes it
    tags: str
    status: str
    owner_id: str
    version: int
    created_us: int  # microseconds since the epoch: turned into datetimes once, when written
    updated_us: int
    last_position: int

    def touch(self, recorded: BatchEvent[Any]) -> None:
        self.version = recorded.stream_version
        self.updated_us = recorded.recorded_us
        self.last_position = recorded.global_position


class _Batch:
    """The batch's projects and memberships, as the tables hold them after each event."""

    def __init__(self) -> None:
        # Keyed by the id's text: parsing 2 UUIDs per event would cost more than the fold.
        self.projects: dict[str, _Project] = {}
        # project id → user id → (role, granted at in µs); per project, so that a deletion
        # drops its members without looking at everyone else's.
        self.members: dict[str, dict[str, tuple[str, int]]] = {}

    def apply(self, recorded: BatchEvent[Any]) -> None:
        # One dict lookup instead of a chain of isinstance checks: this runs once per event
        # of a rebuild.
        handler = _HANDLERS.get(type(recorded.event))
        if handler is not None:
            handler(self, recorded, recorded.event)

    def _created(self, recorded: BatchEvent[Any], event: ProjectCreated) -> None:
        self.projects[event.project_id] = _Project(
            name=event.name,
            description=event.description,
            config=_json.encode(event.config).decode(),
            tags=_json.encode(event.tags).decode(),
            status="active",
            owner_id=event.owner_id,
            version=recorded.stream_version,
            created_us=recorded.recorded_us,
            updated_us=recorded.recorded_us,
            last_position=recorded.global_position,
        )
        self.members.setdefault(event.project_id, {})[event.owner_id] = (
            "owner",
            recorded.recorded_us,
        )

    def _updated(self, recorded: BatchEvent[Any], event: ProjectUpdated) -> None:
        project = self.projects.get(event.project_id)
        if project is None:
            return
        if event.name is not msgspec.UNSET:
            project.name = event.name
        if event.description is not msgspec.UNSET:
            project.description = event.description
        if event.config is not msgspec.UNSET:
            project.config = _json.encode(event.config).decode()
        if event.tags is not msgspec.UNSET:
            project.tags = _json.encode(event.tags).decode()
        project.touch(recorded)

    def _archived(self, recorded: BatchEvent[Any], event: ProjectArchived) -> None:
        self._set_status(recorded, event.project_id, "archived")

    def _restored(self, recorded: BatchEvent[Any], event: ProjectRestored) -> None:
        self._set_status(recorded, event.project_id, "active")

    def _set_status(self, recorded: BatchEvent[Any], project_id: str, status: str) -> None:
        project = self.projects.get(project_id)
        if project is not None:
            project.status = status
            project.touch(recorded)

    def _deleted(self, recorded: BatchEvent[Any], event: ProjectDeleted) -> None:
        self.projects.pop(event.project_id, None)
        self.members.pop(event.project_id, None)

    def _granted(self, recorded: BatchEvent[Any], event: MemberGranted) -> None:
        members = self.members.setdefault(event.project_id, {})
        members[event.user_id] = (event.role, recorded.recorded_us)
        self._touch(recorded, event.project_id)

    def _revoked(self, recorded: BatchEvent[Any], event: MemberRevoked) -> None:
        members = self.members.get(event.project_id)
        if members is not None:
            members.pop(event.user_id, None)
        self._touch(recorded, event.project_id)

    def _touch(self, recorded: BatchEvent[Any], project_id: str) -> None:
        project = self.projects.get(project_id)
        if project is not None:
            project.touch(recorded)


_HANDLERS: dict[type, Callable[[_Batch, BatchEvent[Any], Any], None]] = {
    ProjectCreated: _Batch._created,
    ProjectUpdated: _Batch._updated,
    ProjectArchived: _Batch._archived,
    ProjectRestored: _Batch._restored,
    ProjectDeleted: _Batch._deleted,
    MemberGranted: _Batch._granted,
    MemberRevoked: _Batch._revoked,
}


async def apply_projects_batch(
    connection: asyncpg.Connection, read_model: ReadModel, events: Sequence[BatchEvent[Event]]
) -> None:
    if not events:
        return
    ids = {e.event.project_id for e in events}  # type: ignore[attr-defined]
    # A project created in this batch has no rows from earlier ones (creation is the first
    # event of its stream): only the others are read, and replaced.
    created = {e.event.project_id for e in events if isinstance(e.event, ProjectCreated)}
    batch = await _load(connection, read_model, list(ids - created))
    existing = list(batch.projects.keys() | batch.members.keys())
    with cyclic_gc_paused():
        for recorded in events:
            batch.apply(recorded)
        projects = [_project_record(pid, p) for pid, p in batch.projects.items()]
        members = [
            (project_id, user, role, datetime_of(granted))
            for project_id, users in batch.members.items()
            for user, (role, granted) in users.items()
        ]
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
        datetime_of(p.created_us),
        datetime_of(p.updated_us),
        p.last_position,
    )


async def _load(connection: asyncpg.Connection, read_model: ReadModel, ids: list[str]) -> _Batch:
    """The rows the batch's projects have before it (from earlier batches)."""
    batch = _Batch()
    if not ids:
        return batch
    # Ids as text, the fold's keys: parsed into UUIDs only to be turned back into text.
    rows = await connection.fetch(
        "SELECT id::text, name, description, config::text AS config, tags::text AS tags, status, "
        "owner_id, version, (extract(epoch FROM created_at) * 1000000)::int8, "
        "(extract(epoch FROM updated_at) * 1000000)::int8, last_position "
        f"FROM {read_model.table('projects')} WHERE id = ANY($1::uuid[])",
        ids,
    )
    for row in rows:
        batch.projects[row[0]] = _Project(*row[1:])
    members = await connection.fetch(
        "SELECT project_id::text, user_id, role, (extract(epoch FROM granted_at) * 1000000)::int8 "
        f"FROM {read_model.table('project_members')} WHERE project_id = ANY($1::uuid[])",
        ids,
    )
    for project_id, user_id, role, granted_us in members:
        batch.members.setdefault(project_id, {})[user_id] = (role, granted_us)
    return batch
