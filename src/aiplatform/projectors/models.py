"""Model registry read model: `projections/models.sql` filled from `model-*` streams."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from aiplatform.cache import TTL_ASSET_INFO, Cache
from aiplatform.domain.models import ModelCardUpdated, ModelRegistered, ModelStageChanged
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.read_models import ReadModel, load_read_model

_json = msgspec.json.Encoder()


def model_info_key(cache: Cache, model_id: str) -> str:
    return cache.key("models", "info", model_id)


class ModelsProjector:
    event_types = frozenset({"ModelRegistered", "ModelCardUpdated", "ModelStageChanged"})

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("models")
        self.table = self.read_model.table("models")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case ModelRegistered():
                await connection.execute(
                    f"INSERT INTO {self.table} (id, project_id, name, version, framework, size, "
                    "sha256, metrics, source_job_id, card, stage, created_by, created_at, "
                    "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, "
                    "$10::text::jsonb, 'none', $11, $12, $12)",
                    event.model_id,
                    event.project_id,
                    event.name,
                    event.version,
                    event.framework,
                    event.size,
                    event.sha256,
                    _json.encode(event.metrics).decode(),
                    event.source_job_id,
                    _json.encode(event.card).decode(),
                    recorded.metadata.actor,
                    recorded.recorded_at,
                )
            case ModelCardUpdated():
                await connection.execute(
                    f"UPDATE {self.table} SET card = $2::text::jsonb, updated_at = $3 "
                    "WHERE id = $1",
                    event.model_id,
                    _json.encode(event.card).decode(),
                    recorded.recorded_at,
                )
            case ModelStageChanged():
                await connection.execute(
                    f"UPDATE {self.table} SET stage = $2, updated_at = $3 WHERE id = $1",
                    event.model_id,
                    event.stage,
                    recorded.recorded_at,
                )

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        """Tombstones the cached model info (`api.models._load`) at its line's new version."""
        await cache.mark_stale(
            {model_info_key(cache, e.event.model_id): e.stream_version for e in events},  # type: ignore[attr-defined]
            TTL_ASSET_INFO,
        )
