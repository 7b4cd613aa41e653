"""Reading experiments from their read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from aiplatform.projectors.read_models import ReadModel, load_read_model


class ExperimentView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str
    base_model: str | None
    task_type: str | None
    config: dict[str, Any]
    status: str
    metrics: dict[str, float]
    created_by: str
    version: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, project_id, name, description, base_model, task_type, config::text AS config, status, "
    "metrics::text AS metrics, created_by, version, created_at, updated_at"
)


def _view(row: asyncpg.Record) -> ExperimentView:
    values = dict(row)
    values["config"] = msgspec.json.decode(values["config"])
    values["metrics"] = msgspec.json.decode(values["metrics"])
    return ExperimentView(**values)


class ExperimentQueries:
    def __init__(self, pool: asyncpg.Pool, read_model: ReadModel | None = None):
        self.pool = pool
        self.read_model = read_model or load_read_model("experiments")
        self.table = self.read_model.table("experiments")

    async def get(self, experiment_id: uuid.UUID) -> ExperimentView | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE id = $1", experiment_id
        )
        return _view(row) if row is not None else None

    async def list(
        self, project_id: uuid.UUID, *, status: str | None, page: int, limit: int
    ) -> tuple[list[ExperimentView], int]:
        where = "project_id = $1 AND ($2::text IS NULL OR status = $2)"
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE {where} "
                "ORDER BY created_at DESC, id LIMIT $3 OFFSET $4",
                project_id,
                status,
                limit,
                (page - 1) * limit,
            )
            total = await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE {where}", project_id, status
            )
        return [_view(row) for row in rows], int(total)
