"""Figures about the running platform: how far each read model lags behind the log, how many
messages wait in each Dramatiq queue, which workers are alive, what the log holds.

`GET admin/stats` and the Prometheus metrics read them; each function does a few cheap reads
and never writes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from redis import asyncio as aioredis

from aiplatform.monitoring.records import BEAT_TTL_S, MonitoringKeys, WorkerBeat


class ProjectionLag(msgspec.Struct, frozen=True, kw_only=True):
    """One installed version of a read model. `events_behind`: committed events after its
    checkpoint; `seconds_behind`: age of the oldest of them (0 when caught up)."""

    read_model: str
    version: str
    generation: int
    state: str  # active, building (a rebuild beside the active one) or retired
    events_applied: int
    events_behind: int
    seconds_behind: float
    checkpoint_updated_at: datetime


class QueueDepth(msgspec.Struct, frozen=True, kw_only=True):
    """Messages of one Dramatiq queue: `ready` to be taken, `delayed` (retries waiting for
    their backoff, messages sent with a delay) and `dead` (dead-lettered)."""

    queue: str
    ready: int
    delayed: int
    dead: int


class HourCount(msgspec.Struct, frozen=True, kw_only=True):
    hour: datetime
    events: int


class LogCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Events in the log, and per hour over the last `hours` hours (oldest first, hours with no
    event included as 0)."""

    total: int
    per_hour: list[HourCount]


_LAG_SQL = """
SELECT v.read_model, v.version, v.generation, v.state, c.events_applied, c.updated_at,
       behind.events, extract(epoch FROM now() - behind.oldest)::float8 AS seconds
  FROM read_model_versions v
  JOIN projection_checkpoints c ON c.projection = v.checkpoint
 CROSS JOIN LATERAL (
       SELECT count(*) AS events, min(e.recorded_at) AS oldest
         FROM events e
        WHERE (e.transaction_id, e.global_position)
              > (c.last_transaction_id, c.last_global_position)
       ) behind
 WHERE v.state = ANY($1::text[])
 ORDER BY v.read_model, v.state
"""

_PER_HOUR_SQL = """
SELECT hours.hour, count(e.global_position) AS events
  FROM generate_series(date_trunc('hour', now()) - ($1 - 1) * interval '1 hour',
                       date_trunc('hour', now()), interval '1 hour') AS hours(hour)
  LEFT JOIN events e
    ON e.recorded_at >= hours.hour AND e.recorded_at < hours.hour + interval '1 hour'
 GROUP BY hours.hour
 ORDER BY hours.hour
"""


async def projection_lags(
    pool: asyncpg.Pool, states: Sequence[str] = ("active", "building")
) -> list[ProjectionLag]:
    """Lag of every installed read-model version in one of `states`."""
    rows = await pool.fetch(_LAG_SQL, list(states))
    return [
        ProjectionLag(
            read_model=row["read_model"],
            version=row["version"],
            generation=row["generation"],
            state=row["state"],
            events_applied=row["events_applied"],
            events_behind=row["events"],
            seconds_behind=round(max(row["seconds"] or 0.0, 0.0), 3),
            checkpoint_updated_at=row["updated_at"],
        )
        for row in rows
    ]


async def log_counts(pool: asyncpg.Pool, hours: int = 24) -> LogCounts:
    async with pool.acquire() as connection:
        total = await connection.fetchval("SELECT count(*) FROM events")
        rows = await connection.fetch(_PER_HOUR_SQL, hours)
    return LogCounts(
        total=int(total),
        per_hour=[HourCount(hour=row["hour"], events=row["events"]) for row in rows],
    )


async def row_counts(pool: asyncpg.Pool, tables: Mapping[str, str]) -> dict[str, int]:
    """Rows per resource: `tables` maps a resource name to its schema-qualified read-model
    table (names from code, never from input)."""
    if not tables:
        return {}
    counts = " UNION ALL ".join(
        f"SELECT {index} AS i, count(*) AS n FROM {table}"
        for index, table in enumerate(tables.values())
    )
    rows = await pool.fetch(counts)
    names = list(tables)
    return {names[row["i"]]: row["n"] for row in sorted(rows, key=lambda r: r["i"])}


def dramatiq_namespace(instance: str) -> str:
    """The Redis key prefix of the platform's Dramatiq queues (as `workers.broker` builds it)."""
    return f"aiplatform-dramatiq-{instance}" if instance else "aiplatform-dramatiq"


async def queue_depths(
    client: aioredis.Redis, namespace: str, queues: Sequence[str]
) -> list[QueueDepth]:
    """Dramatiq's Redis broker keeps a queue's waiting message ids in the list
    `<namespace>:<queue>`, delayed ones in `<namespace>:<queue>.DQ` and dead-lettered ones in
    the sorted set `<namespace>:<queue>.XQ`."""
    async with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(f"{namespace}:{queue}")
            pipe.llen(f"{namespace}:{queue}.DQ")
            pipe.zcard(f"{namespace}:{queue}.XQ")
        counts = await pipe.execute()
    return [
        QueueDepth(queue=queue, ready=ready, delayed=delayed, dead=dead)
        for queue, ready, delayed, dead in zip(
            queues, counts[0::3], counts[1::3], counts[2::3], strict=True
        )
    ]


_beat_decoder = msgspec.json.Decoder(WorkerBeat)


async def workers_alive(
    client: aioredis.Redis, prefix: str, now: float | None = None
) -> list[WorkerBeat]:
    """Worker processes that beat within `BEAT_TTL_S` (written by `workers.monitoring`), with
    their queues and devices, oldest beat first."""
    keys = MonitoringKeys(prefix)
    now = time.time() if now is None else now
    members = await client.zrangebyscore(keys.workers, now - BEAT_TTL_S, "+inf")
    if not members:
        return []
    names = [keys.worker(m.decode() if isinstance(m, bytes) else str(m)) for m in members]
    beats = await client.mget(names)
    return [_beat_decoder.decode(beat) for beat in beats if beat is not None]


async def database_health(pool: asyncpg.Pool) -> dict[str, Any]:
    """Answers, how fast, and how big the database is; never raises."""
    started = time.perf_counter()
    try:
        row = await pool.fetchrow(
            "SELECT current_setting('server_version') AS version, "
            "pg_database_size(current_database()) AS size_bytes",
            timeout=2.0,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return {"ok": False, "error": str(error) or type(error).__name__}
    assert row is not None
    return {
        "ok": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "server_version": row["version"],
        "size_bytes": row["size_bytes"],
    }


async def redis_health(client: aioredis.Redis) -> dict[str, Any]:
    """Answers, how fast, and how much memory Redis uses; never raises."""
    started = time.perf_counter()
    try:
        await client.ping()
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        memory = await client.info("memory")
    except (OSError, aioredis.RedisError) as error:
        return {"ok": False, "error": str(error) or type(error).__name__}
    return {"ok": True, "latency_ms": latency_ms, "used_memory_bytes": memory.get("used_memory")}
