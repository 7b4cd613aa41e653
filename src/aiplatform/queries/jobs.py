"""Reading training jobs: the job, lists, a cached status with an ETA, log pages and metric
curves shrunk to what a chart draws."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from aiplatform.cache import Cache, VersionedEntry
from aiplatform.downsample import largest_triangle_three_buckets
from aiplatform.projectors.jobs import TTL_JOB_STATUS, job_status_key
from aiplatform.projectors.read_models import ReadModel, load_read_model

# A curve of more points than this many times those asked for is first cut down in the
# database to the first, last, lowest and highest point of each of `points` step ranges
# (MinMaxLTTB, Van Der Donckt et al. 2023), so a long run's points never all reach Python.
PRESELECT_RATIO = 4


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    experiment_id: str | None
    name: str
    template: str
    dataset_id: str
    dataset_version: str
    base_model_id: str | None
    hyperparameters: dict[str, Any]
    priority: int
    time_limit_s: int
    status: str
    attempt: int
    cancel_requested: bool
    retry_reason: str | None
    step: int
    epoch: int
    total_steps: int | None
    progress: float
    samples_per_second: float | None
    latest_metrics: dict[str, float | None]
    checkpoint_step: int | None
    checkpoint_epoch: int | None
    checkpoint_path: str | None
    worker: str | None
    devices: list[str]
    model_id: str | None
    error: str | None
    traceback: str | None
    metrics: dict[str, float | None] | None  # the final metrics of a succeeded job
    duration_s: float | None
    resource_usage: dict[str, Any] | None
    log_lines: int
    submitted_by: str
    submitted_at: datetime
    started_at: datetime | None  # of the current attempt
    finished_at: datetime | None
    updated_at: datetime
    version: int


class JobStatusView(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    status: str
    attempt: int
    cancel_requested: bool
    progress: float  # 0-1
    step: int
    epoch: int
    total_steps: int | None
    samples_per_second: float | None
    # Seconds until the last step at this attempt's step rate; None when the job is not running
    # or has not reported progress past its starting step yet.
    eta_s: float | None
    estimated_finish_at: datetime | None
    latest_metrics: dict[str, float | None]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    version: int


class JobFilters(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    project_id: uuid.UUID | None = None
    template: str | None = None
    experiment_id: uuid.UUID | None = None
    # Only jobs of projects this user is a member of; None for every job (admins).
    member_id: str | None = None
    page: int = 1
    limit: int = 20


class LogLineView(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time: datetime
    level: str
    message: str


class MetricCurve(msgspec.Struct, frozen=True, kw_only=True):
    steps: list[int]
    values: list[float]
    total_points: int  # before downsampling


_JSON_COLUMNS = ("hyperparameters", "latest_metrics", "devices", "metrics", "resource_usage")
_COLUMNS = ", ".join(
    f"{name}::text AS {name}" if name in _JSON_COLUMNS else name
    for name in JobView.__struct_fields__
)
_STATUS_COLUMNS = (
    "id, status, attempt, cancel_requested, progress, step, epoch, total_steps, "
    "samples_per_second, latest_metrics::text AS latest_metrics, error, started_at, "
    "progressed_at, attempt_start_step, finished_at, updated_at, version"
)
_encoder = msgspec.json.Encoder()
_status_decoder = msgspec.json.Decoder(JobStatusView)


def _view(row: asyncpg.Record) -> JobView:
    values = dict(row)
    for name in _JSON_COLUMNS:
        if values[name] is not None:
            values[name] = msgspec.json.decode(values[name])
    return JobView(**values)


def estimated_finish(
    *,
    started_at: datetime | None,
    progressed_at: datetime | None,
    start_step: int,
    step: int,
    total_steps: int | None,
) -> datetime | None:
    """When the last step is due if this attempt keeps the rate it has had since it started
    (start-up time included, so an early estimate errs long); None before it is measurable."""
    if started_at is None or progressed_at is None or not total_steps:
        return None
    done = step - start_step
    elapsed_s = (progressed_at - started_at).total_seconds()
    if done <= 0 or elapsed_s <= 0:
        return None
    remaining = max(total_steps - step, 0)
    return progressed_at + timedelta(seconds=remaining * elapsed_s / done)


def _status_view(row: asyncpg.Record) -> JobStatusView:
    finish = (
        estimated_finish(
            started_at=row["started_at"],
            progressed_at=row["progressed_at"],
            start_step=row["attempt_start_step"],
            step=row["step"],
            total_steps=row["total_steps"],
        )
        if row["status"] == "running"
        else None
    )
    return JobStatusView(
        job_id=row["id"],
        status=row["status"],
        attempt=row["attempt"],
        cancel_requested=row["cancel_requested"],
        progress=row["progress"],
        step=row["step"],
        epoch=row["epoch"],
        total_steps=row["total_steps"],
        samples_per_second=row["samples_per_second"],
        eta_s=None,
        estimated_finish_at=finish,
        latest_metrics=msgspec.json.decode(row["latest_metrics"]),
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


def with_eta(view: JobStatusView, now: datetime) -> JobStatusView:
    """The ETA as seen at `now`: a cached status stays right while it is cached."""
    if view.estimated_finish_at is None:
        return msgspec.structs.replace(view, eta_s=None)
    eta_s = max(0.0, (view.estimated_finish_at - now).total_seconds())
    return msgspec.structs.replace(view, eta_s=round(eta_s, 1))


class JobQueries:
    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: Cache,
        read_model: ReadModel | None = None,
        projects_read_model: ReadModel | None = None,
    ):
        self.pool = pool
        self.cache = cache
        self.read_model = read_model or load_read_model("jobs")
        self.table = self.read_model.table("jobs")
        self.metrics_table = self.read_model.table("job_metrics")
        self.logs_table = self.read_model.table("job_logs")
        projects = projects_read_model or load_read_model("projects")
        self.members = projects.table("project_members")

    async def get(self, job_id: uuid.UUID) -> JobView | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM {self.table} WHERE id = $1", job_id)
        return _view(row) if row is not None else None

    async def status(
        self, job_id: uuid.UUID, *, fresh: bool = False, now: datetime | None = None
    ) -> JobStatusView | None:
        """Through Redis (30 s, tombstoned by the projector at each new version); `fresh`
        reads the table, for a read that has just waited for a write."""
        key = job_status_key(self.cache, self.read_model, str(job_id))
        cached = None if fresh else await self.cache.get_versioned(key)
        if cached is not None:
            view = _status_decoder.decode(cached)
        else:
            row = await self.pool.fetchrow(
                f"SELECT {_STATUS_COLUMNS} FROM {self.table} WHERE id = $1", job_id
            )
            if row is None:
                return None
            view = _status_view(row)
            entry = VersionedEntry(key, view.version, _encoder.encode(view))
            await self.cache.set_versioned([entry], TTL_JOB_STATUS)
        return with_eta(view, now or datetime.now(UTC))

    async def logs(
        self, job_id: uuid.UUID, *, after_seq: int, limit: int
    ) -> tuple[list[LogLineView], int]:
        """Up to `limit` lines after line `after_seq`, oldest first, and how many the job has."""
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT seq, time, level, message FROM {self.logs_table} "
                "WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                job_id,
                after_seq,
                limit,
            )
            total = await connection.fetchval(
                f"SELECT log_lines FROM {self.table} WHERE id = $1", job_id
            )
        return [LogLineView(**dict(row)) for row in rows], int(total or 0)

    async def curve(self, job_id: uuid.UUID, name: str, points: int) -> MetricCurve:
        """The metric `name` over steps, shrunk by Largest-Triangle-Three-Buckets to at most
        `points` points."""
        async with self.pool.acquire() as connection:
            ends = await connection.fetchrow(
                f"SELECT min(step) AS first, max(step) AS last FROM {self.metrics_table} "
                "WHERE job_id = $1 AND name = $2",
                job_id,
                name,
            )
            if ends["first"] is None:
                return MetricCurve(steps=[], values=[], total_points=0)
            # Steps are unique, so a short range of them holds few points.
            if ends["last"] - ends["first"] < PRESELECT_RATIO * points:
                rows = await connection.fetch(
                    f"SELECT step, value FROM {self.metrics_table} "
                    "WHERE job_id = $1 AND name = $2 ORDER BY step",
                    job_id,
                    name,
                )
                steps = [row["step"] for row in rows]
                values = [row["value"] for row in rows]
                total = len(rows)
            else:
                steps, values, total = await self._preselected(
                    connection, job_id, name, ends["first"], ends["last"], points
                )
        kept = largest_triangle_three_buckets(steps, values, points)
        return MetricCurve(
            steps=[steps[i] for i in kept], values=[values[i] for i in kept], total_points=total
        )

    async def _preselected(
        self,
        connection: asyncpg.Connection,
        job_id: uuid.UUID,
        name: str,
        first: int,
        last: int,
        buckets: int,
    ) -> tuple[list[int], list[float], int]:
        """The first, last, lowest and highest point of each of `buckets` equal step ranges
        (every end, peak and dip of the curve is among them), and how many points there are.
        One pass over the series; the first and last points' values are then looked up by step
        (a subquery per bucket: a join is planned as more passes), which is cheaper than
        carrying them through the aggregate."""
        point = f"SELECT value FROM {self.metrics_table} WHERE job_id = $1 AND name = $2 AND step"
        rows = await connection.fetch(
            "SELECT points, low, high, first, last, "
            f"({point} = b.first) AS first_value, ({point} = b.last) AS last_value "
            "FROM (SELECT count(*) AS points, min(step) AS first, max(step) AS last, "
            "min(ARRAY[value, step::float8]) AS low, max(ARRAY[value, step::float8]) AS high "
            f"FROM {self.metrics_table} WHERE job_id = $1 AND name = $2 "
            "GROUP BY (step - $3) * $5 / ($4 - $3 + 1)) b",
            job_id,
            name,
            first,
            last,
            buckets,
        )
        chosen: dict[int, float] = {}
        for row in rows:
            chosen[row["first"]] = row["first_value"]
            chosen[row["last"]] = row["last_value"]
            for value, step in (row["low"], row["high"]):
                chosen[int(step)] = value
        steps = sorted(chosen)
        return steps, [chosen[step] for step in steps], sum(row["points"] for row in rows)

    async def list(self, filters: JobFilters) -> tuple[list[JobView], int]:
        """Newest first. (Last in the class: below it, `list` would name this method.)"""
        where = (
            "($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR project_id = $2) "
            "AND ($3::text IS NULL OR template = $3) "
            f"AND ($4::text IS NULL OR project_id IN (SELECT project_id FROM {self.members} "
            "WHERE user_id = $4)) AND ($5::text IS NULL OR experiment_id = $5)"
        )
        experiment = str(filters.experiment_id) if filters.experiment_id is not None else None
        arguments = (
            filters.status,
            filters.project_id,
            filters.template,
            filters.member_id,
            experiment,
        )
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE {where} "
                "ORDER BY submitted_at DESC, id LIMIT $6 OFFSET $7",
                *arguments,
                filters.limit,
                (filters.page - 1) * filters.limit,
            )
            total = await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE {where}", *arguments
            )
        return [_view(row) for row in rows], int(total)
