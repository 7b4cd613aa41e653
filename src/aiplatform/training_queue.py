"""The training queue (migration 0004): jobs waiting for a worker, best first.

Dramatiq's Redis queues are first-in first-out and a message's priority only orders what one
worker has already fetched, so job priorities cannot live in the broker. Instead each submitted
job gets a row here (in its JobSubmitted transaction) and a token message on the `training`
queue; a worker holding a token claims the best waiting job at that moment. Claims are keyed
by the token, so a token redelivered after its worker died finds the same job again.
"""

from __future__ import annotations

import uuid

import asyncpg
from dramatiq import Message

RUN_TRAINING_JOB = "run_training_job"
# A failed attempt that can succeed later is retried by Dramatiq with this backoff.
RETRY_MIN_BACKOFF_MS = 2_000
RETRY_MAX_BACKOFF_MS = 60_000


def training_token() -> Message[None]:
    """A token for one run of the training actor; its id is what a claim is keyed by."""
    return Message(
        queue_name="training",
        actor_name=RUN_TRAINING_JOB,
        args=(uuid.uuid4().hex,),
        kwargs={},
        options={},
    )


async def enqueue_job(connection: asyncpg.Connection, job_id: str, priority: int) -> None:
    """Called inside the JobSubmitted transaction."""
    await connection.execute(
        "INSERT INTO training_queue (job_id, priority) VALUES ($1, $2)",
        uuid.UUID(job_id),
        priority,
    )


async def claim(pool: asyncpg.Pool, token: str) -> tuple[str, bool] | None:
    """The job this token runs: the one it claimed before (redelivered: True), or the best
    waiting one, or None when no job waits."""
    async with pool.acquire() as connection, connection.transaction():
        previous = await connection.fetchval(
            "SELECT job_id FROM training_queue WHERE claimed_by = $1", token
        )
        if previous is not None:
            return str(previous), True
        claimed = await connection.fetchval(
            "UPDATE training_queue SET claimed_by = $1, claimed_at = now() "
            "WHERE job_id = (SELECT job_id FROM training_queue "
            "WHERE claimed_by IS NULL AND NOT cancel_requested "
            "ORDER BY priority, submitted LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "RETURNING job_id",
            token,
        )
        return (str(claimed), False) if claimed is not None else None


async def release(pool: asyncpg.Pool, job_id: str) -> None:
    """The job is finished: nothing will run it again."""
    await pool.execute("DELETE FROM training_queue WHERE job_id = $1", uuid.UUID(job_id))


async def request_cancel(pool: asyncpg.Pool, job_id: str) -> None:
    """Tells the worker running the job to stop it (the worker polls `cancel_requested`)."""
    await pool.execute(
        "UPDATE training_queue SET cancel_requested = true WHERE job_id = $1", uuid.UUID(job_id)
    )


async def cancel_requested(pool: asyncpg.Pool, job_id: str) -> bool:
    """True when a cancel was asked for, or the job left the queue (finished elsewhere)."""
    row = await pool.fetchrow(
        "SELECT cancel_requested FROM training_queue WHERE job_id = $1", uuid.UUID(job_id)
    )
    return row is None or bool(row["cancel_requested"])


async def waiting_jobs(pool: asyncpg.Pool, older_than_s: float = 0.0) -> int:
    """Jobs no worker has claimed, queued at least `older_than_s` ago."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM training_queue WHERE claimed_by IS NULL "
            "AND NOT cancel_requested AND queued_at <= now() - make_interval(secs => $1)",
            older_than_s,
        )
    )
