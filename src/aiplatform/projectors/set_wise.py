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
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from aiplatform.eventstore.codec import Event, decode_event, event_class
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
# A batch comes back as one row per event type and schema version: how many of the batch's
# events it has and, of those of the projector's types, the data as one JSON array (msgspec
# decodes it in one call) and the stream versions, global positions and recording times as
# arrays in PostgreSQL's binary format (`array_send`), which NumPy reads without a Python object
# per element. The aggregates of a group see its rows in one order, so the i-th element of each
# belong to one event. Row by row, asyncpg's parsing and a Python loop over the rows cost more
# than the rest of a rebuild's reading; building JSON arrays of `[version, position, time,
# data]` per event took PostgreSQL half as long again as the data alone (text concatenation and
# numeric `extract`), and asyncpg's own array decoding makes an object per element. Only what
# `BatchEvent` needs is read (decoding the metadata would cost as much as the event). One pass,
# no window function: numbering the rows in catch-up order, or a CTE read twice to find the
# batch's last row, each cost a sixth to a third more.
_BATCH_SQL = f"""
SELECT event_type, schema_version, count(*) AS read,
       array_send(array_agg(stream_version) FILTER (WHERE data IS NOT NULL)) AS stream_versions,
       array_send(array_agg(global_position) FILTER (WHERE data IS NOT NULL)) AS positions,
       array_send(array_agg(recorded_at) FILTER (WHERE data IS NOT NULL)) AS recorded_at,
       '[' || string_agg(data::text, ',') || ']' AS events
  FROM (SELECT global_position, stream_version, event_type, schema_version, recorded_at,
               CASE WHEN event_type = ANY($4::text[]) THEN data END AS data
        {BATCH_FROM}) AS batch
 GROUP BY event_type, schema_version
"""
# `array_send` of a one-dimensional array without NULLs: dimensions, NULL flag, element type,
# length, lower bound (int32 each), then each element as its length (int32) and its value;
# `int8` and `timestamptz` values are big-endian int64, timestamps in microseconds since
# PostgreSQL's epoch.
_ARRAY_HEADER = struct.Struct(">iiiii")
_INT64_ELEMENT = np.dtype([("length", ">i4"), ("value", ">i8")])
_POSTGRES_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
# The batch's last row: where the checkpoint moves to.
_LAST_OF_BATCH_SQL = f"""
SELECT transaction_id::text, global_position
{BATCH_FROM.replace("LIMIT $5", "OFFSET $4 - 1 LIMIT 1")}
"""
# A batch's rows and the arrays built of them fit in memory: sorted or hashed on disk, they
# took several times as long.
_WORK_MEM_SQL = "SET LOCAL work_mem = '64MB'"
_ASYNCHRONOUS_COMMIT_SQL = "SET LOCAL synchronous_commit = off"
_HORIZON_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"

E = TypeVar("E")


class BatchEvent(msgspec.Struct, Generic[E], frozen=True, gc=False):
    """What a set-wise projector gets of an event: no metadata and no event id (none needs
    them, and decoding the metadata costs as much as decoding the event), and the time it was
    recorded as microseconds since the epoch: most events of a batch are folded away, so only
    the times that reach a row are worth a `datetime`. Not tracked by the cyclic collector (it
    cannot be part of a cycle: nothing an event holds refers back to it): a batch makes tens
    of thousands of them, which each collection would otherwise walk."""

    stream_version: int
    global_position: int
    recorded_us: int
    event: E

    @property
    def recorded_at(self) -> datetime:
        return datetime_of(self.recorded_us)


_decoders: dict[tuple[str, int], msgspec.json.Decoder[list[Any]]] = {}


def datetime_of(microseconds: int) -> datetime:
    # Positional: `timedelta(microseconds=...)` costs half as much again, once per row written.
    return _EPOCH + timedelta(0, 0, microseconds)


def microseconds_of(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


@runtime_checkable
class SetWiseProjector(Projector, Protocol):
    """`apply_batch` gets a batch's events by global position: each stream's events in their
    own order, which is all a fold of per-stream state may rely on. (Catch-up order, by
    committing transaction, differs from it only between streams written concurrently.)"""

    async def apply_batch(
        self, connection: asyncpg.Connection, events: Sequence[BatchEvent[Event]]
    ) -> None: ...


# A position in catch-up order: (transaction id as text, global position).
Position = tuple[str, int]


@dataclass(frozen=True)
class _Batch:
    after: Position
    events: list[BatchEvent[Event]]
    read: int  # rows read, events of other types included
    last: Position


def decode_batch(rows: Sequence[asyncpg.Record]) -> list[BatchEvent[Event]]:
    """The batch's events in log order (by global position: each stream's own order), from
    its rows of one event type each."""
    events: list[BatchEvent[Event]] = []
    with cyclic_gc_paused():
        for row in rows:
            if row["events"] is None:  # a type the projector does not take
                continue
            decoded = _decode_type(row["event_type"], row["schema_version"], row["events"])
            versions = _int64s(row["stream_versions"]).tolist()
            positions = _int64s(row["positions"]).tolist()
            times = (_int64s(row["recorded_at"]) + _POSTGRES_EPOCH_US).tolist()
            if not len(decoded) == len(versions) == len(positions) == len(times):
                raise ValueError(f"a batch's {row['event_type']} arrays differ in length")
            events += map(BatchEvent, versions, positions, times, decoded)
        events.sort(key=_position)  # a merge of sorted runs
    return events


def _int64s(array: bytes) -> npt.NDArray[np.int64]:
    dimensions, has_nulls, _, length, _ = _ARRAY_HEADER.unpack_from(array)
    if dimensions != 1 or has_nulls:
        raise ValueError("expected a one-dimensional array without NULLs")
    values = np.frombuffer(array, dtype=_INT64_ELEMENT, offset=_ARRAY_HEADER.size, count=length)
    return values["value"].astype(np.int64)


def _position(event: BatchEvent[Any]) -> int:
    return event.global_position


def _decode_type(event_type: str, schema_version: int, events: str) -> list[Event]:
    decoder = _decoders.get((event_type, schema_version))
    if decoder is not None:
        return decoder.decode(events)
    cls = event_class(event_type)
    if schema_version == cls.schema_version:
        decoder = _decoders[(event_type, schema_version)] = msgspec.json.Decoder(
            list[cls]  # type: ignore[valid-type]
        )
        return decoder.decode(events)
    # An older version: each through the codec's upcasters.
    return [
        decode_event(event_type, schema_version, bytes(old))
        for old in msgspec.json.decode(events, type=list[msgspec.Raw])
    ]


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
        await create_secondary_indexes(self.pool, self.projector.read_model)

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
            # A batch lost in a crash is lost with its checkpoint, and built again: its commit
            # need not wait for the disk.
            await connection.execute(_ASYNCHRONOUS_COMMIT_SQL)
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
        async with connection.transaction():
            await connection.execute(_WORK_MEM_SQL)
            rows = await connection.fetch(
                _BATCH_SQL, *after, horizon, self._event_types, self.batch_size
            )
        read = sum(row["read"] for row in rows)
        if not read:
            return _Batch(after=after, events=[], read=0, last=after)
        last = await connection.fetchrow(_LAST_OF_BATCH_SQL, *after, horizon, read)
        return _Batch(after=after, events=decode_batch(rows), read=read, last=(last[0], last[1]))

    async def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            # Whatever it ended with (cancelled, or a failed read) no longer matters.
            await asyncio.gather(ahead, return_exceptions=True)
