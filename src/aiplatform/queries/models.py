"""Reading the model registry: the read model for lists, the model index for lookups by id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from aiplatform.domain.models import line_of
from aiplatform.projectors.read_models import ReadModel, load_read_model


class ModelView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    version: int
    framework: str
    size: int
    sha256: str
    metrics: dict[str, float]
    source_job_id: str | None
    card: dict[str, Any]
    stage: str
    created_by: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, project_id, name, version, framework, size, sha256, metrics::text AS metrics, "
    "source_job_id, card::text AS card, stage, created_by, created_at, updated_at"
)


def _view(row: asyncpg.Record) -> ModelView:
    values = dict(row)
    values["metrics"] = msgspec.json.decode(values["metrics"])
    values["card"] = msgspec.json.decode(values["card"])
    return ModelView(**values)


class ModelQueries:
    def __init__(self, pool: asyncpg.Pool, read_model: ReadModel | None = None):
        self.pool = pool
        self.read_model = read_model or load_read_model("models")
        self.table = self.read_model.table("models")

    async def line(self, model_id: uuid.UUID) -> tuple[str, str] | None:
        """The project and the model line (`<project>/<name>`) of a model id; consistent with
        the log (the index is written with the registration)."""
        row = await self.pool.fetchrow(
            "SELECT project_id, name FROM model_index WHERE model_id = $1", model_id
        )
        if row is None:
            return None
        return str(row["project_id"]), line_of(str(row["project_id"]), row["name"])

    async def list(
        self,
        project_id: uuid.UUID,
        *,
        name: str | None,
        stage: str | None,
        page: int,
        limit: int,
        servable: bool = False,
    ) -> tuple[list[ModelView], int]:
        """`servable`: only models trained here (their card names a template), which the
        inference workers can load."""
        where = (
            "project_id = $1 AND ($2::text IS NULL OR name = $2) "
            "AND ($3::text IS NULL OR stage = $3)"
            + (" AND card ? 'template' AND stage <> 'archived'" if servable else "")
        )
        arguments = (project_id, name, stage)
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE {where} "
                "ORDER BY name, version DESC LIMIT $4 OFFSET $5",
                *arguments,
                limit,
                (page - 1) * limit,
            )
            total = await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE {where}", *arguments
            )
        return [_view(row) for row in rows], int(total)
