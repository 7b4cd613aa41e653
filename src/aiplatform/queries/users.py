"""Reading users from their read model."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from aiplatform.projectors.read_models import ReadModel, load_read_model


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    username: str
    email: str
    full_name: str
    system_role: str
    active: bool
    last_login_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, username, email, full_name, system_role, active, last_login_at, version, created_at, "
    "updated_at"
)


def _view(row: asyncpg.Record) -> UserView:
    return UserView(**dict(row))


class UserQueries:
    def __init__(self, pool: asyncpg.Pool, read_model: ReadModel | None = None):
        self.pool = pool
        self.read_model = read_model or load_read_model("users")
        self.table = self.read_model.table("users")

    async def get(self, user_id: uuid.UUID) -> UserView | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE id = $1", user_id
        )
        return _view(row) if row is not None else None

    async def list(self, *, q: str | None, page: int, limit: int) -> tuple[list[UserView], int]:
        pattern = None
        if q:
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
        where = "($1::text IS NULL OR username ILIKE $1 OR email ILIKE $1 OR full_name ILIKE $1)"
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE {where} "
                "ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
                pattern,
                limit,
                (page - 1) * limit,
            )
            total = await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE {where}", pattern
            )
        return [_view(row) for row in rows], int(total)
