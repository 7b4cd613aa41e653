"""Appending to and reading streams of the PostgreSQL event log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from aiplatform.eventstore.codec import (
    Event,
    EventMetadata,
    RecordedEvent,
    decode_event,
    decode_metadata,
    encode,
)
from aiplatform.eventstore.errors import ConcurrencyError, IdempotencyKeyReusedError

# With an idempotency key, the append_events function records the key with the events.
_APPEND_KEYED_SQL = "SELECT * FROM append_events($1, $2, $3, $4, $5, $6, $7, $8, $9)"
# Without one, a single statement does (measured: a PL/pgSQL call costs about a fifth of an
# append's throughput). The version and the first-write check are read once, before the first
# row is inserted; a stale version or a prior write in the transaction inserts nothing.
_VERSION_GUARD = """
SELECT coalesce(max(e.stream_version), 0) AS v,
       pg_current_xact_id_if_assigned() IS NULL AS first_write
  FROM events e WHERE e.stream_id = $1
"""
_APPEND_ONE_SQL = f"""
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata)
SELECT $1, c.v + 1, $3, $4, $5, $6, $7
  FROM ({_VERSION_GUARD}) c
 WHERE c.first_write AND ($2::bigint IS NULL OR c.v = $2)
RETURNING global_position AS first_position, global_position AS last_position, stream_version,
          recorded_at
"""
_APPEND_MANY_SQL = f"""
WITH inserted AS (
    INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                        metadata)
    SELECT $1, c.v + u.n, u.id, u.t, u.sv, u.d, u.m
      FROM ({_VERSION_GUARD}) c,
           unnest($3::uuid[], $4::text[], $5::smallint[], $6::jsonb[], $7::jsonb[])
           WITH ORDINALITY AS u(id, t, sv, d, m, n)
     WHERE c.first_write AND ($2::bigint IS NULL OR c.v = $2)
     ORDER BY u.n
    RETURNING global_position, stream_version, recorded_at
)
SELECT min(global_position) AS first_position, max(global_position) AS last_position,
       max(stream_version) AS stream_version, min(recorded_at) AS recorded_at
  FROM inserted
HAVING count(*) > 0
"""
_EVENT_COLUMNS = (
    "stream_id, stream_version, global_position, event_id, event_type, schema_version, "
    "data::text AS data, metadata::text AS metadata, recorded_at"
)
_CONCURRENCY_SQLSTATE = "AP002"
_IDEMPOTENCY_SQLSTATE = "AP003"


class AppendNotFirstWriteError(RuntimeError):
    """The transaction wrote before appending; its events could be read out of order."""


class AppendResult(msgspec.Struct, frozen=True):
    stream_id: str
    stream_version: int
    first_position: int
    last_position: int
    # The events' recorded_at (the append transaction's start time).
    recorded_at: datetime
    duplicate: bool = False


def _columns(
    events: Sequence[Event], metadata: EventMetadata
) -> tuple[list[uuid.UUID], list[str], list[int], list[str], list[str]]:
    encoded_metadata = encode(metadata)
    return (
        [uuid.uuid4() for _ in events],
        [type(event).__name__ for event in events],
        [type(event).schema_version for event in events],
        [encode(event) for event in events],
        [encoded_metadata] * len(events),
    )


def record_from_row(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        global_position=row["global_position"],
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        event=decode_event(row["event_type"], row["schema_version"], row["data"]),
        metadata=decode_metadata(row["metadata"]),
        recorded_at=row["recorded_at"],
    )


async def _keep_session(_: asyncpg.Connection) -> None:
    """The platform changes session state only inside transactions (SET LOCAL, transaction
    advisory locks), so a released connection needs no reset query; asyncpg's default one costs
    an extra round trip on every release. asyncpg still rolls back an open transaction."""


async def create_pool(
    database_url: str,
    *,
    max_size: int = 10,
    idle_in_transaction_timeout_ms: int = 30_000,
    application_name: str = "aiplatform",
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=max_size,
        reset=_keep_session,
        server_settings={
            "application_name": application_name,
            "idle_in_transaction_session_timeout": str(idle_in_transaction_timeout_ms),
        },
    )


class EventStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        metadata: EventMetadata,
        *,
        expected_version: int | None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        connection: asyncpg.Connection | None = None,
    ) -> AppendResult:
        """Appends all `events` atomically, in one round trip. `expected_version=None` appends
        whatever the stream's version; a repeated `idempotency_key` returns the first result.
        With `connection`, the append joins the caller's transaction, of which it must be the
        first write."""
        database: asyncpg.Connection | asyncpg.Pool = connection or self.pool
        if not events:
            raise ValueError("an append needs at least one event")
        try:
            if idempotency_key is not None:
                row = await database.fetchrow(
                    _APPEND_KEYED_SQL,
                    stream_id,
                    expected_version,
                    idempotency_key,
                    request_hash,
                    *_columns(events, metadata),
                )
            elif len(events) == 1:
                row = await database.fetchrow(
                    _APPEND_ONE_SQL,
                    stream_id,
                    expected_version,
                    uuid.uuid4(),
                    type(events[0]).__name__,
                    type(events[0]).schema_version,
                    encode(events[0]),
                    encode(metadata),
                )
            else:
                row = await database.fetchrow(
                    _APPEND_MANY_SQL, stream_id, expected_version, *_columns(events, metadata)
                )
        except asyncpg.UniqueViolationError as error:
            # Two writers decided on the same version; the primary key let only one in.
            if error.constraint_name != "events_pkey":
                raise
            current = await self.stream_version(stream_id)
            raise ConcurrencyError(stream_id, expected_version, current) from None
        except asyncpg.PostgresError as error:
            if error.sqlstate == _CONCURRENCY_SQLSTATE:
                current = int(error.detail or 0)
                raise ConcurrencyError(stream_id, expected_version, current) from None
            if error.sqlstate == _IDEMPOTENCY_SQLSTATE and idempotency_key is not None:
                raise IdempotencyKeyReusedError(idempotency_key) from None
            raise
        if row is None:
            await self._refused(stream_id, expected_version)
        assert row is not None
        return AppendResult(
            stream_id=stream_id,
            stream_version=row["stream_version"],
            first_position=row["first_position"],
            last_position=row["last_position"],
            recorded_at=row["recorded_at"],
            duplicate=idempotency_key is not None and row["duplicate"],
        )

    async def _refused(self, stream_id: str, expected_version: int | None) -> None:
        """Says why a guarded insert inserted nothing."""
        current = await self.stream_version(stream_id)
        if expected_version is not None and current != expected_version:
            raise ConcurrencyError(stream_id, expected_version, current)
        raise AppendNotFirstWriteError(
            "an append must be the first write of its transaction, or its events could be "
            "read out of order"
        )

    async def previous_result(
        self, idempotency_key: str, request_hash: str | None
    ) -> AppendResult | None:
        """The result of a command already accepted under `idempotency_key`, if any."""
        row = await self.pool.fetchrow(
            "SELECT * FROM processed_commands WHERE idempotency_key = $1", idempotency_key
        )
        if row is None or row["stream_version"] is None:
            return None
        if row["request_hash"] != request_hash:
            raise IdempotencyKeyReusedError(idempotency_key)
        return AppendResult(
            stream_id=row["stream_id"],
            stream_version=row["stream_version"],
            first_position=row["first_position"],
            last_position=row["last_position"],
            recorded_at=row["recorded_at"],
            duplicate=True,
        )

    async def stream_version(self, stream_id: str) -> int:
        version = await self.pool.fetchval(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        return int(version)

    async def read_stream(
        self, stream_id: str, *, after_version: int = 0, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        rows = await self.pool.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 "
            "AND ($3::bigint IS NULL OR stream_version <= $3) ORDER BY stream_version",
            stream_id,
            after_version,
            up_to_version,
        )
        return [record_from_row(row) for row in rows]

    async def read_stream_page(
        self, stream_id: str, *, offset: int, limit: int
    ) -> tuple[list[RecordedEvent], int]:
        """A page of a stream, oldest first, and the stream's length."""
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                # Stream versions have no gaps, so a page is a range of versions.
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = $1 "
                "AND stream_version > $2 AND stream_version <= $2 + $3 ORDER BY stream_version",
                stream_id,
                offset,
                limit,
            )
            total = await connection.fetchval(
                "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1",
                stream_id,
            )
        return [record_from_row(row) for row in rows], int(total)
