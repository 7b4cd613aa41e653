"""Custom roles read model: `projections/roles.sql` filled from `role-*` streams."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from aiplatform.cache import Cache
from aiplatform.domain.roles import RoleCreated, RoleDeleted, RolePermissionsChanged
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.read_models import ReadModel, load_read_model


class RolesProjector:
    event_types = frozenset({"RoleCreated", "RolePermissionsChanged", "RoleDeleted"})

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("roles")
        self.table = self.read_model.table("roles")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case RoleCreated():
                await connection.execute(
                    f"INSERT INTO {self.table} (name, description, permissions, version, "
                    "created_at, updated_at) VALUES ($1, $2, $3::text::jsonb, $4, $5, $5)",
                    event.name,
                    event.description,
                    msgspec.json.encode(event.permissions).decode(),
                    recorded.stream_version,
                    recorded.recorded_at,
                )
            case RolePermissionsChanged():
                await connection.execute(
                    f"UPDATE {self.table} SET permissions = $2::text::jsonb, version = $3, "
                    "updated_at = $4 WHERE name = $1",
                    event.name,
                    msgspec.json.encode(event.permissions).decode(),
                    recorded.stream_version,
                    recorded.recorded_at,
                )
            case RoleDeleted():
                await connection.execute(f"DELETE FROM {self.table} WHERE name = $1", event.name)

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        return None
