"""Datasets read model: `projections/datasets.sql` filled from `dataset-*` streams."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from aiplatform.cache import TTL_ASSET_INFO, Cache
from aiplatform.domain.datasets import (
    DatasetCreated,
    DatasetDeleted,
    DatasetQualityReported,
    DatasetVersionCommitted,
)
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.read_models import ReadModel, load_read_model


def dataset_info_key(cache: Cache, dataset_id: str) -> str:
    return cache.key("datasets", "info", dataset_id)


class DatasetsProjector:
    event_types = frozenset(
        {"DatasetCreated", "DatasetVersionCommitted", "DatasetQualityReported", "DatasetDeleted"}
    )

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("datasets")
        self.table = self.read_model.table("datasets")
        self.versions = self.read_model.table("dataset_versions")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case DatasetCreated():
                await connection.execute(
                    f"INSERT INTO {self.table} (id, project_id, name, description, versions, "
                    "created_by, version, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $7)",
                    event.dataset_id,
                    event.project_id,
                    event.name,
                    event.description,
                    recorded.metadata.actor,
                    recorded.stream_version,
                    recorded.recorded_at,
                )
                return
            case DatasetVersionCommitted():
                await connection.execute(
                    f"INSERT INTO {self.versions} (dataset_id, version, number, parent, message, "
                    "sha256, size, rows, format, filename, uploaded_by, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    event.dataset_id,
                    event.version,
                    int(event.version[1:]),
                    event.parent,
                    event.message,
                    event.sha256,
                    event.size,
                    event.rows,
                    event.format,
                    event.filename,
                    event.uploaded_by,
                    recorded.recorded_at,
                )
                await connection.execute(
                    f"UPDATE {self.table} SET latest_version = $2, versions = versions + 1 "
                    "WHERE id = $1",
                    event.dataset_id,
                    event.version,
                )
            case DatasetQualityReported():
                await connection.execute(
                    f"UPDATE {self.versions} SET quality = $3::text::jsonb "
                    "WHERE dataset_id = $1 AND version = $2",
                    event.dataset_id,
                    event.version,
                    msgspec.json.encode(event.report).decode(),
                )
            case DatasetDeleted():
                await connection.execute(
                    f"DELETE FROM {self.table} WHERE id = $1", event.dataset_id
                )
                await connection.execute(
                    f"DELETE FROM {self.versions} WHERE dataset_id = $1", event.dataset_id
                )
                return
        await connection.execute(
            f"UPDATE {self.table} SET version = $2, updated_at = $3 WHERE id = $1",
            event.dataset_id,  # type: ignore[attr-defined]
            recorded.stream_version,
            recorded.recorded_at,
        )

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        """Tombstones the cached dataset info (`api.datasets._load`) at its new version."""
        await cache.mark_stale(
            {dataset_info_key(cache, e.event.dataset_id): e.stream_version for e in events},  # type: ignore[attr-defined]
            TTL_ASSET_INFO,
        )
