"""Building a read-model version from the log a large batch at a time, set-wise and pipelined.

A version being built (rebuild.py) is filled by a projector that can apply a whole batch with
a few set-wise statements (fold in Python, then write each table once): row-by-row writes cost
a round trip per event, several times the cost of reading and decoding it.

Each batch is applied in one transaction that locks the version's checkpoint, as `project_batch`
does. While it is folded and written, the next batch is already read and decoded on a second
connection: reading (PostgreSQL walking the log and turning `jsonb` into text) and writing
(PostgreSQL applying the `COPY`s and their indexes) then run on the server's side while this
process decodes and folds, where one after the other each would wait for the other.

A batch read ahead is applied only if, under the lock, the checkpoint is still where the read
started; otherwise (another worker applied batches meanwhile) it is read again. Its rows are
those of transactions older than every transaction running when it was read: the horizon only
moves forward, so they are still the next ones in catch-up order when it is applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import asyncpg
import msgspec

from aiplatform.eventstore.codec import Event, decode_event
from aiplatform.projectors.read_models import (
    create_secondary_indexes,
    drop_secondary_indexes,
)
from aiplatform.projectors.runner import (
    ADVANCE_CHECKPOINT_SQL,
    BATCH_FROM,
    LOCK_CHECKPOINT_SQL,
    Projector,
    cyclic_gc_paused,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Only what `BatchEvent` needs: the metadata would cost a fifth of a rebuild's time, and the
# transaction id is needed of the last row only. `recorded_at` comes as exact integer
# microseconds: asyncpg's timestamptz decoding costs more than the rest of a row.
_BATCH_SQL = (
    "SELECT stream_version, global_position, event_type, schema_version, "
    "CASE WHEN event_type = ANY($4::text[]) THEN data::text END AS data, "
    "(extract(epoch FROM recorded_at) * 1000000)::int8 AS recorded_us" + BATCH_FROM
)
_HORIZON_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
_TRANSACTION_OF_SQL = "SELECT transaction_id::text FROM events WHERE global_position = $1"

_decoders: dict[tuple[str, int], msgspec.json.Decoder[Any]] = {}


class BatchEvent(msgspec.Struct, frozen=True):
    """What a set-wise projector gets of an event: no metadata and no event id (none needs
    them, and decoding the metadata costs as much as decoding the event), and the time it was
    recorded as microseconds since the epoch: most events of a batch are folded away, so only
    the times that reach a row are worth a `datetime`."""

    stream_version: int
    global_position: int
    recorded_us: int
    event: Event

    @property
    def recorded_at(self) -> datetime:
        return datetime_of(self.recorded_us)


def datetime_of(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


def microseconds_of(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


@runtime_checkable
class SetWiseProjector(Projector, Protocol):
    async def apply_batch(
        self, connection: asyncpg.Connection, events: Sequence[BatchEvent]
    ) -> None: ...


# A position in catch-up order: (transaction id as text, global position).
Position = tuple[str, int]


@dataclass(frozen=True)
class _Batch:
    after: Position
    events: list[BatchEvent]
    read: int  # rows read, events of other types included
    last: Position


def decode_batch(rows: Sequence[asyncpg.Record]) -> list[BatchEvent]:
    events: list[BatchEvent] = []
    append = events.append
    decoders = _decoders
    with cyclic_gc_paused():
        for stream_version, position, event_type, schema_version, data, recorded_us in rows:
            if data is None:
                continue
            decoder = decoders.get((event_type, schema_version))
            if decoder is not None:
                event = decoder.decode(data)
            else:
                # Through the codec (and its upcasters); an event of the current version
                # teaches the fast path its decoder.
                event = decode_event(event_type, schema_version, data)
                if type(event).schema_version == schema_version:
                    decoders[(event_type, schema_version)] = msgspec.json.Decoder(type(event))
            append(BatchEvent(stream_version, position, recorded_us, event))
    return events


class SetWiseBuild:
    """Applies the batches of one version being built, reading each next one ahead. Use as an
    async context manager: entering it on empty tables drops their secondary indexes, which
    `before_switch` builds again; leaving it drops a batch still being read."""

    def __init__(self, pool: asyncpg.Pool, projector: SetWiseProjector, batch_size: int):
        self.pool = pool
        self.projector = projector
        self.batch_size = batch_size
        self._event_types = list(projector.event_types)
        # Reading ahead takes a second connection while the batch's transaction holds one.
        self._reads_ahead = pool.get_max_size() >= 2
        self._ahead: asyncio.Task[_Batch] | None = None

    async def __aenter__(self) -> SetWiseBuild:
        read_model = self.projector.read_model
        applied = await self.pool.fetchval(
            "SELECT last_global_position FROM projection_checkpoints WHERE projection = $1",
            read_model.checkpoint,
        )
        if applied == 0:  # empty tables: their secondary indexes are built once, at the end
            async with self.pool.acquire() as connection:
                await drop_secondary_indexes(connection, read_model)
        return self

    async def before_switch(self) -> None:
        """Builds the secondary indexes dropped for the build (or by an earlier attempt)."""
        async with self.pool.acquire() as connection:
            await create_secondary_indexes(connection, self.projector.read_model)

    async def __aexit__(self, *_: object) -> None:
        await self._drop_ahead()

    async def apply_next(self) -> int | None:
        """Applies the next batch. Returns how many events it read (0: nothing readable now, or
        the version is no longer being built), or None when another worker holds it."""
        checkpoint_name = self.projector.read_model.checkpoint
        async with self.pool.acquire() as connection, connection.transaction():
            checkpoint = await connection.fetchrow(LOCK_CHECKPOINT_SQL, checkpoint_name)
            if checkpoint is None:
                await self._drop_ahead()
                return None
            if checkpoint["state"] != "building":
                # Switched in (or retired) meanwhile: it publishes now, batch by batch.
                await self._drop_ahead()
                return 0
            after = (checkpoint["last_transaction_id"], checkpoint["last_global_position"])
            batch = await self._take(connection, after, checkpoint["horizon"])
            if batch.read == 0:
                return 0
            if batch.read == self.batch_size and self._reads_ahead:
                self._ahead = asyncio.create_task(self._read_ahead(batch.last))
            await self.projector.apply_batch(connection, batch.events)
            await connection.execute(
                ADVANCE_CHECKPOINT_SQL, checkpoint_name, *batch.last, len(batch.events)
            )
            return batch.read

    async def _take(self, connection: asyncpg.Connection, after: Position, horizon: str) -> _Batch:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            batch = await ahead
            if batch.after == after:
                return batch
        return await self._read(connection, after, horizon)

    async def _read_ahead(self, after: Position) -> _Batch:
        async with self.pool.acquire() as connection:
            return await self._read(connection, after, await connection.fetchval(_HORIZON_SQL))

    async def _read(self, connection: asyncpg.Connection, after: Position, horizon: str) -> _Batch:
        rows = await connection.fetch(
            _BATCH_SQL, *after, horizon, self._event_types, self.batch_size
        )
        if not rows:
            return _Batch(after=after, events=[], read=0, last=after)
        last_position: int = rows[-1]["global_position"]
        last_transaction = await connection.fetchval(_TRANSACTION_OF_SQL, last_position)
        return _Batch(
            after=after,
            events=decode_batch(rows),
            read=len(rows),
            last=(last_transaction, last_position),
        )

    async def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            # Whatever it ended with (cancelled, or a failed read) no longer matters.
            await asyncio.gather(ahead, return_exceptions=True)
