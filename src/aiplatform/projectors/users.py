"""Users read model: `projections/users.sql` filled from `user-*` streams."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from aiplatform.cache import Cache
from aiplatform.domain.users import (
    UserDeactivated,
    UserLoggedIn,
    UserReactivated,
    UserRegistered,
    UserRoleChanged,
    UserUpdated,
)
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.read_models import ReadModel, load_read_model


class UsersProjector:
    event_types = frozenset(
        cls.__name__
        for cls in (
            UserRegistered,
            UserUpdated,
            UserRoleChanged,
            UserDeactivated,
            UserReactivated,
            UserLoggedIn,
        )
    ) | {"UserPasswordChanged", "UserLoggedOut"}

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("users")
        self.table = self.read_model.table("users")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, UserRegistered):
            await connection.execute(
                f"INSERT INTO {self.table} (id, username, email, full_name, system_role, active, "
                "version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $7)",
                event.user_id,
                event.username,
                event.email,
                event.full_name,
                event.system_role,
                recorded.stream_version,
                recorded.recorded_at,
            )
            return
        changes: dict[str, object] = {}
        match event:
            case UserUpdated():
                changes = {
                    f: getattr(event, f)
                    for f in ("email", "full_name")
                    if isinstance(getattr(event, f), str)
                }
            case UserRoleChanged():
                changes = {"system_role": event.system_role}
            case UserDeactivated():
                changes = {"active": False}
            case UserReactivated():
                changes = {"active": True}
            case UserLoggedIn():
                changes = {"last_login_at": recorded.recorded_at}
        assignments = "".join(f", {column} = ${n}" for n, column in enumerate(changes, start=4))
        await connection.execute(
            f"UPDATE {self.table} SET version = $2, updated_at = $3{assignments} WHERE id = $1",
            recorded.event.user_id,  # type: ignore[attr-defined]
            recorded.stream_version,
            recorded.recorded_at,
            *changes.values(),
        )

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        for user_id in {e.event.user_id for e in events}:  # type: ignore[attr-defined]
            await cache.publish(f"user:{user_id}", b'{"type":"changed"}')
