"""Reading datasets from their read model (lists), for the pages a project shows."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from aiplatform.projectors.read_models import ReadModel, load_read_model


class DatasetView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str
    latest_version: str | None
    versions: int
    created_by: str
    version: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, project_id, name, description, latest_version, versions, created_by, version, "
    "created_at, updated_at"
)


class DatasetQueries:
    def __init__(self, pool: asyncpg.Pool, read_model: ReadModel | None = None):
        self.pool = pool
        self.read_model = read_model or load_read_model("datasets")
        self.table = self.read_model.table("datasets")

    async def list(
        self, project_id: uuid.UUID, *, page: int, limit: int
    ) -> tuple[list[DatasetView], int]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE project_id = $1 "
                "ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
                project_id,
                limit,
                (page - 1) * limit,
            )
            total = await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE project_id = $1", project_id
            )
        return [DatasetView(**dict(row)) for row in rows], int(total)
