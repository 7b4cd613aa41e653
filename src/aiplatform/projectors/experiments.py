"""Experiments read model: `projections/experiments.sql` filled from `experiment-*` streams."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from aiplatform.cache import Cache
from aiplatform.domain.experiments import (
    ExperimentCreated,
    ExperimentFinished,
    ExperimentStarted,
    ExperimentUpdated,
)
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.read_models import ReadModel, load_read_model

_json = msgspec.json.Encoder()
_JSON_COLUMNS = ("config", "metrics")


class ExperimentsProjector:
    event_types = frozenset(
        cls.__name__
        for cls in (ExperimentCreated, ExperimentUpdated, ExperimentStarted, ExperimentFinished)
    )

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("experiments")
        self.table = self.read_model.table("experiments")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, ExperimentCreated):
            await connection.execute(
                f"INSERT INTO {self.table} (id, project_id, name, description, base_model, "
                "task_type, config, status, metrics, created_by, version, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, 'draft', '{}', $8, $9, $10, $10)",
                event.experiment_id,
                event.project_id,
                event.name,
                event.description,
                event.base_model,
                event.task_type,
                _json.encode(event.config).decode(),
                recorded.metadata.actor,
                recorded.stream_version,
                recorded.recorded_at,
            )
            return
        changes: dict[str, object] = {}
        match event:
            case ExperimentUpdated():
                changes = {
                    f: getattr(event, f)
                    for f in ("name", "description", "base_model", "task_type", "config", "status")
                    if getattr(event, f) is not msgspec.UNSET
                }
            case ExperimentStarted():
                changes = {"status": "running"}
            case ExperimentFinished():
                changes = {"status": event.status, "metrics": event.metrics}
        assignments = "".join(
            f", {column} = ${n}" + ("::text::jsonb" if column in _JSON_COLUMNS else "")
            for n, column in enumerate(changes, start=4)
        )
        values = [
            _json.encode(value).decode() if column in _JSON_COLUMNS else value
            for column, value in changes.items()
        ]
        await connection.execute(
            f"UPDATE {self.table} SET version = $2, updated_at = $3{assignments} WHERE id = $1",
            event.experiment_id,  # type: ignore[attr-defined]
            recorded.stream_version,
            recorded.recorded_at,
            *values,
        )

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        return None
