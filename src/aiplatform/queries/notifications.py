"""Reading a user's notifications, newest first, always from the read-model table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from aiplatform.projectors.read_models import ReadModel, load_read_model


class NotificationView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    kind: str
    title: str
    body: str
    data: dict[str, Any]  # ids of what it is about: job_id, project_id, model_id, ...
    read: bool
    created_at: datetime  # when its source event was recorded
    position: int  # its source event's global position


class NotificationPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[NotificationView]
    total: int  # matching the filter
    unread: int  # of all the user's notifications


_COLUMNS = "id, kind, title, body, data::text AS data, read, created_at, position"


def _view(row: asyncpg.Record) -> NotificationView:
    values = dict(row)
    values["data"] = msgspec.json.decode(values["data"])
    return NotificationView(**values)


class NotificationQueries:
    def __init__(self, pool: asyncpg.Pool, read_model: ReadModel | None = None):
        self.pool = pool
        self.read_model = read_model or load_read_model("notifications")
        self.table = self.read_model.table("notifications")

    async def get(self, user_id: str, notification_id: uuid.UUID) -> NotificationView | None:
        """The user's notification; None when there is none of theirs with this id."""
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE id = $1 AND user_id = $2",
            notification_id,
            user_id,
        )
        return _view(row) if row is not None else None

    async def newest_position(self, user_id: str) -> int | None:
        """The position of the user's newest notification while any is unread, else None."""
        position: int | None = await self.pool.fetchval(
            f"SELECT max(position) FROM {self.table} WHERE user_id = $1 HAVING bool_or(NOT read)",
            user_id,
        )
        return position

    async def page(
        self, user_id: str, *, read: bool | None, page: int, limit: int
    ) -> NotificationPage:
        """Newest first; `read` False for the unread ones only, True for the read ones."""
        where = "user_id = $1 AND ($2::boolean IS NULL OR read = $2)"
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE {where} "
                "ORDER BY position DESC LIMIT $3 OFFSET $4",
                user_id,
                read,
                limit,
                (page - 1) * limit,
            )
            counts = await connection.fetchrow(
                f"SELECT count(*) FILTER (WHERE $2::boolean IS NULL OR read = $2) AS total, "
                f"count(*) FILTER (WHERE NOT read) AS unread FROM {self.table} "
                "WHERE user_id = $1",
                user_id,
                read,
            )
        return NotificationPage(
            items=[_view(row) for row in rows], total=counts["total"], unread=counts["unread"]
        )
