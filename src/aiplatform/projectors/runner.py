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
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import asyncpg
import msgspec

from aiplatform.cache import Cache
from aiplatform.eventstore.codec import Event, RecordedEvent, decode_event
from aiplatform.eventstore.store import record_from_row
from aiplatform.projectors.read_models import ReadModel
from aiplatform.streams.heads import Head, publish_head

# `state`: the version's (read_model_versions); NULL for a read model installed without one.
_LOCK_CHECKPOINT_SQL = """
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
_BATCH_FROM = """
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
    "metadata::text AS metadata, recorded_at" + _BATCH_FROM
)
# What `BatchEvent` needs: reading the metadata too costs a rebuild a fifth of its time, and
# the transaction id (as text) is needed of the last row only. `recorded_at` comes as exact
# integer microseconds: asyncpg's timestamptz decoding cost more than the rest of a row.
_SET_WISE_BATCH_SQL = (
    "SELECT stream_version, global_position, event_type, schema_version, "
    "CASE WHEN event_type = ANY($4::text[]) THEN data::text END AS data, "
    "(extract(epoch FROM recorded_at) * 1000000)::int8 AS recorded_us" + _BATCH_FROM
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRANSACTION_OF_SQL = "SELECT transaction_id::text FROM events WHERE global_position = $1"
_ADVANCE_SQL = """
UPDATE projection_checkpoints
   SET last_transaction_id = $2::text::xid8, last_global_position = $3,
       events_applied = events_applied + $4, updated_at = now()
 WHERE projection = $1
"""


_decoders: dict[tuple[str, int], msgspec.json.Decoder[Any]] = {}


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


def _batch_event(row: asyncpg.Record) -> BatchEvent:
    event_type, schema_version, data = row["event_type"], row["schema_version"], row["data"]
    decoder = _decoders.get((event_type, schema_version))
    if decoder is not None:
        event = decoder.decode(data)
    else:
        # Through the codec (and its upcasters); an event of the current version teaches the
        # fast path its decoder.
        event = decode_event(event_type, schema_version, data)
        if type(event).schema_version == schema_version:
            _decoders[(event_type, schema_version)] = msgspec.json.Decoder(type(event))
    return BatchEvent(
        stream_version=row["stream_version"],
        global_position=row["global_position"],
        recorded_at=_EPOCH + timedelta(microseconds=row["recorded_us"]),
        event=event,
    )


class Projector(Protocol):
    read_model: ReadModel
    event_types: frozenset[str]

    async def apply(self, connection: asyncpg.Connection, event: RecordedEvent) -> None: ...

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        """Invalidates cached reads and publishes change messages; runs only after commit."""


class BatchEvent(msgspec.Struct, frozen=True):
    """What a set-wise projector gets of an event: no metadata and no event id (none needs
    them, and decoding the metadata costs as much as decoding the event)."""

    stream_version: int
    global_position: int
    recorded_at: datetime
    event: Event


@runtime_checkable
class SetWiseProjector(Projector, Protocol):
    """A projector that can also apply a whole batch with a few set-wise statements (fold in
    Python, then write each table once). Rebuilds use it: row-by-row writes cost a round trip
    per event, several times the cost of reading and decoding the event."""

    async def apply_batch(
        self, connection: asyncpg.Connection, events: Sequence[BatchEvent]
    ) -> None: ...


BeforeCommit = Callable[[Sequence[RecordedEvent]], Awaitable[None]]


async def project_batch(
    pool: asyncpg.Pool,
    projector: Projector,
    cache: Cache,
    *,
    batch_size: int = 500,
    before_commit: BeforeCommit | None = None,
    set_wise: bool = False,
) -> int | None:
    """Applies one batch. Returns how many events it read (0: caught up), or None when another
    worker holds this read model. `set_wise` applies the batch of a version being built with
    `apply_batch` where the projector has one.

    Only the active version of a read model publishes (cache refreshes, change messages, its
    head for live streams): a version being built replays old history, and a retired one is
    read by nobody who subscribes."""
    async with pool.acquire() as connection, connection.transaction():
        checkpoint = await connection.fetchrow(
            _LOCK_CHECKPOINT_SQL, projector.read_model.checkpoint
        )
        if checkpoint is None:
            return None
        set_wise = (
            set_wise
            and checkpoint["state"] == "building"
            and isinstance(projector, SetWiseProjector)
        )
        rows = await connection.fetch(
            _SET_WISE_BATCH_SQL if set_wise else _BATCH_SQL,
            checkpoint["last_transaction_id"],
            checkpoint["last_global_position"],
            checkpoint["horizon"],
            list(projector.event_types),
            batch_size,
        )
        if not rows:
            return 0
        last = rows[-1]
        if set_wise:
            # A version being built publishes nothing, and it cannot be switched in meanwhile:
            # the switch locks this checkpoint row too.
            with cyclic_gc_paused():
                batch = [_batch_event(row) for row in rows if row["data"] is not None]
            await projector.apply_batch(connection, batch)  # type: ignore[attr-defined]
            await connection.execute(
                _ADVANCE_SQL,
                projector.read_model.checkpoint,
                await connection.fetchval(_TRANSACTION_OF_SQL, last["global_position"]),
                last["global_position"],
                len(batch),
            )
            return len(rows)
        applied = [record_from_row(row) for row in rows if row["data"] is not None]
        for event in applied:
            await projector.apply(connection, event)
        await connection.execute(
            _ADVANCE_SQL,
            projector.read_model.checkpoint,
            last["transaction_id"],
            last["global_position"],
            len(applied),
        )
        if before_commit is not None:
            await before_commit(applied)
    if checkpoint["state"] not in (None, "active"):
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
