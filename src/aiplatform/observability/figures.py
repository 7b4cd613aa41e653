"""Reading the platform-wide figures that `/metrics` exposes: short queries against the event
store and the read models, and a few Redis reads. A store that cannot be reached is reported
as unreadable; the other's figures still come back."""

from __future__ import annotations

import logging
import time
from asyncio import timeout as asyncio_timeout
from dataclasses import replace

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aiplatform.monitoring.records import MonitoringKeys
from aiplatform.monitoring.status import read_status
from aiplatform.observability.metrics import JOB_STATUSES, PlatformFigures
from aiplatform.platform_stats import (
    dramatiq_namespace,
    projection_lags,
    queue_depths,
    workers_alive,
)
from aiplatform.workers.broker import QUEUES

log = logging.getLogger(__name__)

# A scrape must answer even when a store hangs: Prometheus' own timeout is 10 s by default.
READ_TIMEOUT_S = 3.0


async def read_figures(
    pool: asyncpg.Pool,
    redis: aioredis.Redis | None,
    key_prefix: str,
    instance: str,
    jobs_table: str,
) -> PlatformFigures:
    figures = PlatformFigures()
    unreadable: set[str] = set()
    try:
        figures = await _with_database(figures, pool, jobs_table)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        log.warning("metrics: the database could not be read: %s", error)
        unreadable.add("database")
    try:
        if redis is None:
            raise ConnectionError("no Redis client")
        figures = await _with_redis(figures, redis, key_prefix, instance)
    except (OSError, TimeoutError, RedisError) as error:
        log.warning("metrics: Redis could not be read: %s", error)
        unreadable.add("redis")
    return replace(figures, unreadable=frozenset(unreadable))


async def _with_database(
    figures: PlatformFigures, pool: asyncpg.Pool, jobs_table: str
) -> PlatformFigures:
    async with asyncio_timeout(READ_TIMEOUT_S):
        # The newest event's position comes from the unique index on global_position.
        position = await pool.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
        lags = await projection_lags(pool)
        # jobs_table comes from code (the read model's active version), never from input.
        rows = await pool.fetch(f"SELECT status, count(*) AS n FROM {jobs_table} GROUP BY status")
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    by_status.update({row["status"]: int(row["n"]) for row in rows})
    return replace(figures, event_log_position=int(position), lags=lags, jobs_by_status=by_status)


async def _with_redis(
    figures: PlatformFigures, redis: aioredis.Redis, key_prefix: str, instance: str
) -> PlatformFigures:
    async with asyncio_timeout(READ_TIMEOUT_S):
        queues = await queue_depths(redis, dramatiq_namespace(instance), QUEUES)
        workers = await workers_alive(redis, key_prefix)
        status = await read_status(redis, MonitoringKeys(key_prefix), time.time())
    return replace(
        figures,
        queues=queues,
        workers=workers,
        gpu_hosts={report.host: report.available for report in status.hosts},
        gpus=status.gpus,
    )
