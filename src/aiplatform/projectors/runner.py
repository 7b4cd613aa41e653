"""Catching a read model up with the log, exactly once.

One transaction per batch: lock the checkpoint row (`FOR UPDATE SKIP LOCKED`, so two workers
never project one read model at once), read the events after it in `(transaction_id,
global_position)` order, but only those of transactions older than every transaction still
running (`pg_snapshot_xmin`), apply them, advance the checkpoint, commit. A late commit of an
older transaction is therefore never skipped (DESIGN.md guarantees 2 and 3).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import asyncpg

from aiplatform.cache import Cache
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.eventstore.store import record_from_row
from aiplatform.projectors.read_models import ReadModel
from aiplatform.streams.heads import Head, publish_head

# `state`: the version's (read_model_versions); NULL for a read model installed without one.
LOCK_CHECKPOINT_SQL = """
SELECT c.last_transaction_id::text AS last_transaction_id, c.last_global_position,
       pg_snapshot_xmin(pg_current_snapshot())::text AS horizon,
       (SELECT v.state FROM read_model_versions v WHERE v.checkpoint = $1) AS state
  FROM projection_checkpoints c WHERE c.projection = $1
   FOR UPDATE OF c SKIP LOCKED
"""
# Events of other types are read too (without their data) so that the checkpoint moves past
# them: otherwise every run would rescan them. The ORDER BY names the table's columns: bare,
# `transaction_id` would be the text column of the SELECT list, sorted as text ('100' < '99')
# and without the catch-up index.
BATCH_FROM = """
  FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < $3::text::xid8
 ORDER BY events.transaction_id, events.global_position
 LIMIT $5
"""
_BATCH_SQL = (
    "SELECT stream_id, stream_version, global_position, event_id, event_type, schema_version, "
    "transaction_id::text AS transaction_id, "
    "CASE WHEN event_type = ANY($4::text[]) THEN data::text END AS data, "
    "metadata::text AS metadata, recorded_at" + BATCH_FROM
)
# A cache without Redis: what a version that readers do not use publishes into.
_NOWHERE = Cache(None)
ADVANCE_CHECKPOINT_SQL = """
UPDATE projection_checkpoints
   SET last_transaction_id = $2::text::xid8, last_global_position = $3,
       events_applied = events_applied + $4, updated_at = now()
 WHERE projection = $1
"""


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """For code that creates tens of thousands of objects that all live until it ends (a
    rebuild batch): the cyclic collector would walk them again and again, which doubled the
    time to decode a batch. Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Projector(Protocol):
    read_model: ReadModel
    event_types: frozenset[str]

    async def apply(self, connection: asyncpg.Connection, event: RecordedEvent) -> None: ...

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        """Invalidates cached reads and publishes change messages; runs only after commit."""


BeforeCommit = Callable[[Sequence[RecordedEvent]], Awaitable[None]]


async def project_batch(
    pool: asyncpg.Pool,
    projector: Projector,
    cache: Cache,
    *,
    batch_size: int = 500,
    before_commit: BeforeCommit | None = None,
) -> int | None:
    """Applies one batch. Returns how many events it read (0: caught up), or None when another
    worker holds this read model.

    Only the active version of a read model publishes (cache refreshes, change messages, its
    head for live streams): a version being built replays old history, and a retired one is
    read by nobody who subscribes."""
    async with pool.acquire() as connection, connection.transaction():
        checkpoint = await connection.fetchrow(LOCK_CHECKPOINT_SQL, projector.read_model.checkpoint)
        if checkpoint is None:
            return None
        rows = await connection.fetch(
            _BATCH_SQL,
            checkpoint["last_transaction_id"],
            checkpoint["last_global_position"],
            checkpoint["horizon"],
            list(projector.event_types),
            batch_size,
        )
        if not rows:
            return 0
        last = rows[-1]
        applied = [record_from_row(row) for row in rows if row["data"] is not None]
        for event in applied:
            await projector.apply(connection, event)
        await connection.execute(
            ADVANCE_CHECKPOINT_SQL,
            projector.read_model.checkpoint,
            last["transaction_id"],
            last["global_position"],
            len(applied),
        )
        if before_commit is not None:
            await before_commit(applied)
    if checkpoint["state"] not in (None, "active"):
        # Nobody subscribes to a version being built or retired: it publishes nowhere, but its
        # projector still lets go of what it kept to publish.
        if applied:
            await projector.after_commit(_NOWHERE, applied)
        return len(rows)
    if applied:
        await projector.after_commit(cache, applied)
    # Live streams read the log up to here: all of it is committed, nothing can appear before.
    head = Head(
        checkpoint=projector.read_model.checkpoint,
        transaction_id=int(last["transaction_id"]),
        position=last["global_position"],
    )
    await publish_head(cache, head)
    return len(rows)


async def catch_up(
    pool: asyncpg.Pool,
    projector: Projector,
    cache: Cache,
    *,
    batch_size: int = 500,
    wait_for_lock_s: float = 5.0,
) -> int:
    """Applies batches until the read model has caught up. When another worker holds the read
    model, waits for it and then makes a pass of its own: the holder's snapshot may predate the
    commit that triggered this call, and skipping would leave that commit waiting for the next
    tick."""
    total = 0
    delay = 0.005
    deadline = time.monotonic() + wait_for_lock_s
    while True:
        read = await project_batch(pool, projector, cache, batch_size=batch_size)
        if read is None:
            if time.monotonic() >= deadline:
                return total
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            continue
        total += read
        if read < batch_size:
            return total
