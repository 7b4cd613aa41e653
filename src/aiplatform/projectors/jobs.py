"""Training jobs read model: `projections/jobs.sql` filled from `job-*` streams.

A long run records metrics and log lines in batches, a few per second: each batch is one
statement (arrays unnested in the database), never one round trip per point or line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec

from aiplatform.cache import Cache
from aiplatform.domain.jobs import (
    JobCancelled,
    JobCancelRequested,
    JobCheckpointed,
    JobFailed,
    JobLogged,
    JobProgressed,
    JobRetried,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    MetricsRecorded,
)
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.projects import ChangeMessage
from aiplatform.projectors.read_models import ReadModel, load_read_model

# DESIGN.md: job status is cached for 30 s.
TTL_JOB_STATUS = 30

_json = msgspec.json.Encoder()
# The progress fraction of a row whose step and total steps are being set to these expressions.
_PROGRESS = (
    "CASE WHEN coalesce({total}, 0) > 0 THEN least(1, greatest(0, {step}::float8 / {total})) "
    "ELSE 0 END"
)


def job_status_key(cache: Cache, read_model: ReadModel, job_id: str) -> str:
    return cache.key("jobs", read_model.version, "status", job_id)


class JobsProjector:
    event_types = frozenset(
        cls.__name__
        for cls in (
            JobSubmitted,
            JobStarted,
            JobProgressed,
            MetricsRecorded,
            JobLogged,
            JobCheckpointed,
            JobRetried,
            JobCancelRequested,
            JobCancelled,
            JobSucceeded,
            JobFailed,
        )
    )

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("jobs")
        self.table = self.read_model.table("jobs")
        self.metrics = self.read_model.table("job_metrics")
        self.logs = self.read_model.table("job_logs")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case JobSubmitted():
                await self._submitted(connection, recorded, event)
            case JobStarted():
                await self._started(connection, recorded, event)
            case JobProgressed():
                await self._update(
                    connection,
                    recorded,
                    "step = $4, epoch = $5, total_steps = $6, "
                    "samples_per_second = coalesce($7, samples_per_second), progressed_at = $3, "
                    f"progress = {_PROGRESS.format(step='$4::bigint', total='$6::bigint')}",
                    event.step,
                    event.epoch,
                    event.total_steps,
                    event.samples_per_second,
                )
            case MetricsRecorded():
                await self._metrics_recorded(connection, recorded, event)
            case JobLogged():
                await self._logged(connection, recorded, event)
            case JobCheckpointed():
                await self._update(
                    connection,
                    recorded,
                    "checkpoint_step = $4, checkpoint_epoch = $5, checkpoint_path = $6",
                    event.step,
                    event.epoch,
                    event.path,
                )
            case JobRetried():
                await self._update(
                    connection,
                    recorded,
                    "status = 'pending', attempt = $4, retry_reason = $5, "
                    "samples_per_second = NULL, progressed_at = NULL",
                    event.attempt - 1,
                    event.reason,
                )
            case JobCancelRequested():
                await self._update(connection, recorded, "cancel_requested = true")
            case JobCancelled():
                await self._update(
                    connection,
                    recorded,
                    "status = 'cancelled', finished_at = $3, step = coalesce($4, step)",
                    event.step,
                )
            case JobSucceeded():
                await self._update(
                    connection,
                    recorded,
                    "status = 'succeeded', finished_at = $3, progress = 1, model_id = $4, "
                    "metrics = $5::text::jsonb, duration_s = $6, resource_usage = $7::text::jsonb",
                    event.model_id,
                    _json.encode(event.metrics).decode(),
                    event.duration_s,
                    _json.encode(event.resource_usage).decode(),
                )
            case JobFailed():
                await self._update(
                    connection,
                    recorded,
                    "status = 'failed', finished_at = $3, error = $4, traceback = $5",
                    event.error,
                    event.traceback,
                )

    async def _update(
        self,
        connection: asyncpg.Connection,
        recorded: RecordedEvent,
        assignments: str,
        *values: object,
    ) -> None:
        """Sets `assignments` (whose parameters start at $4; $3 is the event's time) and moves
        the row to the event's stream version."""
        await connection.execute(
            f"UPDATE {self.table} SET version = $2, updated_at = $3, {assignments} WHERE id = $1",
            recorded.event.job_id,  # type: ignore[attr-defined]
            recorded.stream_version,
            recorded.recorded_at,
            *values,
        )

    async def _submitted(
        self, connection: asyncpg.Connection, recorded: RecordedEvent, event: JobSubmitted
    ) -> None:
        await connection.execute(
            f"INSERT INTO {self.table} (id, project_id, experiment_id, name, template, "
            "dataset_id, dataset_version, base_model_id, hyperparameters, priority, time_limit_s, "
            "status, submitted_by, submitted_at, updated_at, version) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11, 'pending', $12, "
            "$13, $13, $14)",
            event.job_id,
            event.project_id,
            event.experiment_id,
            event.name,
            event.template,
            event.dataset_id,
            event.dataset_version,
            event.base_model_id,
            _json.encode(event.hyperparameters).decode(),
            event.priority,
            event.time_limit_s,
            recorded.metadata.actor,
            recorded.recorded_at,
            recorded.stream_version,
        )

    async def _started(
        self, connection: asyncpg.Connection, recorded: RecordedEvent, event: JobStarted
    ) -> None:
        """An attempt starts where its checkpoint left off (or from scratch): the steps an
        earlier attempt reported past that point were trained away, so their metric points go
        and the new attempt's points take their place."""
        await connection.execute(
            f"DELETE FROM {self.metrics} WHERE job_id = $1 AND step > $2",
            event.job_id,
            -1 if event.resumed_from_step is None else event.resumed_from_step,
        )
        await self._update(
            connection,
            recorded,
            "status = 'running', attempt = $4, worker = $5, devices = $6::text::jsonb, "
            "started_at = $3, progressed_at = NULL, samples_per_second = NULL, "
            "step = coalesce($7::bigint, 0), attempt_start_step = coalesce($7::bigint, 0), "
            "epoch = CASE WHEN $7::bigint IS NULL THEN 0 "
            "WHEN checkpoint_step = $7::bigint THEN checkpoint_epoch ELSE epoch END, "
            f"progress = {_PROGRESS.format(step='coalesce($7::bigint, 0)', total='total_steps')}",
            event.attempt,
            event.worker,
            _json.encode(event.devices).decode(),
            event.resumed_from_step,
        )

    async def _metrics_recorded(
        self, connection: asyncpg.Connection, recorded: RecordedEvent, event: MetricsRecorded
    ) -> None:
        names: list[str] = []
        steps: list[int] = []
        values: list[float] = []
        latest: dict[str, float] = {}
        for name, series in event.series.items():
            points = list(zip(series.steps, series.values, strict=False))
            if not points:
                continue
            names.extend([name] * len(points))
            steps.extend(step for step, _ in points)
            values.extend(value for _, value in points)
            latest[name] = points[-1][1]
        # A step reported twice in one batch keeps its last value (an upsert may not touch a
        # row twice in one statement).
        await connection.execute(
            f"WITH points AS (INSERT INTO {self.metrics} (job_id, name, step, value) "
            "SELECT DISTINCT ON (p.name, p.step) $1::uuid, p.name, p.step, p.value "
            "FROM unnest($4::text[], $5::bigint[], $6::float8[]) WITH ORDINALITY "
            "AS p(name, step, value, n) ORDER BY p.name, p.step, p.n DESC "
            "ON CONFLICT (job_id, name, step) DO UPDATE SET value = excluded.value) "
            f"UPDATE {self.table} SET version = $2, updated_at = $3, "
            "latest_metrics = latest_metrics || $7::text::jsonb WHERE id = $1",
            event.job_id,
            recorded.stream_version,
            recorded.recorded_at,
            names,
            steps,
            values,
            _json.encode(latest).decode(),
        )

    async def _logged(
        self, connection: asyncpg.Connection, recorded: RecordedEvent, event: JobLogged
    ) -> None:
        """The job's line counter hands the batch its sequence numbers."""
        fallback = recorded.recorded_at
        await connection.execute(
            f"WITH counter AS (UPDATE {self.table} SET version = $2, updated_at = $3, "
            "log_lines = log_lines + cardinality($5::text[]) WHERE id = $1 "
            "RETURNING log_lines - cardinality($5::text[]) AS base) "
            f"INSERT INTO {self.logs} (job_id, seq, time, level, message) "
            "SELECT $1, counter.base + l.n, l.time, l.level, l.message FROM counter, "
            "unnest($4::timestamptz[], $5::text[], $6::text[]) WITH ORDINALITY "
            "AS l(time, level, message, n)",
            event.job_id,
            recorded.stream_version,
            recorded.recorded_at,
            [_line_time(line.time, fallback) for line in event.lines],
            [line.level for line in event.lines],
            [line.message for line in event.lines],
        )

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        """Tombstones each changed job's cached status at its new version, and tells the
        job's channel once per batch (a burst of metric batches is one message)."""
        last: dict[str, RecordedEvent] = {}
        for recorded in events:
            last[recorded.event.job_id] = recorded  # type: ignore[attr-defined]
        await cache.mark_stale(
            {
                job_status_key(cache, self.read_model, job_id): recorded.stream_version
                for job_id, recorded in last.items()
            },
            TTL_JOB_STATUS,
        )
        for job_id, recorded in last.items():
            message = ChangeMessage(
                position=recorded.global_position,
                stream_id=recorded.stream_id,
                version=recorded.stream_version,
                type=recorded.event_type,
            )
            await cache.publish(f"job:{job_id}", _json.encode(message))


def _line_time(seconds: float, fallback: datetime) -> datetime:
    """The trainer's clock, unless it wrote a time no timestamp can hold."""
    if not math.isfinite(seconds):
        return fallback
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return fallback
