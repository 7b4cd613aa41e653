"""Moving an event log between clusters as JSON lines: `aiplatform export-events` and
`aiplatform import-events`.

The export is one consistent snapshot of the log (a repeatable-read transaction) streamed
with COPY in catch-up order, `(transaction_id, global_position)`: one event per line,
with its stream id and version, event id, type, schema version, data and metadata exactly as
stored (no upcasting), and its `recorded_at`.

The import writes the lines in file order, in batches of one transaction each, keeping every
field including the global position. Transaction ids belong to a cluster, so the target hands
out its own: each batch's is younger than the previous one's, and readers order a batch's
events by position. A batch therefore ends wherever the file's positions go down (an older
source transaction that committed later), and the target's catch-up order is the file's.

The target must be empty, or hold exactly the file's first events (an import that stopped
midway): then the import resumes after them. Anything else is refused, because appending a
log onto another would interleave two histories.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import asyncpg
import msgspec

# PostgreSQL writes each line (keys as in `ExportedEvent`) and streams them with COPY: encoding
# them in Python cost two thirds of an export's time. Data and metadata go out as stored.
EXPORT_SQL = """
SELECT json_build_object(
           'position', global_position, 'stream_id', stream_id,
           'stream_version', stream_version, 'event_id', event_id, 'event_type', event_type,
           'schema_version', schema_version, 'data', data, 'metadata', metadata,
           'recorded_at', recorded_at)::text AS line
  FROM events
 ORDER BY transaction_id, global_position
"""
# COPY's text format would escape every backslash of the JSON. CSV with a delimiter and a quote
# that JSON text never holds raw (it escapes control characters) copies each line verbatim.
_VERBATIM = {"format": "csv", "delimiter": "\x01", "quote": "\x02"}
_LAST_EVENT_SQL = """
SELECT event_id FROM events ORDER BY transaction_id DESC, global_position DESC LIMIT 1
"""
COLUMNS = (
    "global_position",
    "stream_id",
    "stream_version",
    "event_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
)
# COPY writes the identity column as given; appends after the import continue above it. (The
# batch's highest position is passed in: `max(global_position)` has no index to read.)
_ADVANCE_POSITIONS_SQL = """
SELECT setval(q.s, greatest($1, coalesce(pg_sequence_last_value(q.s), 0)))
  FROM (SELECT pg_get_serial_sequence('events', 'global_position')::regclass AS s) q
"""
# The model registry finds a model's stream by its id through this table, written beside the
# ModelRegistered event; the import writes it the same way.
_MODEL_INDEX_SQL = """
INSERT INTO model_index (model_id, project_id, name)
SELECT m.model_id, m.project_id, m.name
  FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS m(model_id, project_id, name)
ON CONFLICT (model_id) DO NOTHING
"""
BATCH_SIZE = 5_000


class ExportedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an export."""

    position: int
    stream_id: str
    stream_version: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    data: msgspec.Raw
    metadata: msgspec.Raw
    recorded_at: datetime


class TransferError(ValueError):
    """A file or a target database the import refuses; the message says why."""


@dataclass(frozen=True)
class ImportReport:
    imported: int
    already_there: int


class _RegisteredModel(msgspec.Struct):
    model_id: uuid.UUID
    project_id: uuid.UUID
    name: str


_line_decoder = msgspec.json.Decoder(ExportedEvent)
_model_decoder = msgspec.json.Decoder(_RegisteredModel)


async def export_events(pool: asyncpg.Pool, out: IO[bytes]) -> int:
    """Writes every event to `out`, one JSON line each; returns how many."""
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        status = await connection.copy_from_query(EXPORT_SQL, output=_writer(out), **_VERBATIM)
    return int(status.rsplit(" ", 1)[1])


def _writer(out: IO[bytes]) -> Callable[[bytes], Awaitable[None]]:
    async def write(chunk: bytes) -> None:
        out.write(chunk)

    return write


def read_lines(lines: Iterable[bytes]) -> Iterator[ExportedEvent]:
    """Decodes an export, naming the line of the first thing wrong with it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _line_decoder.decode(line)
        except msgspec.DecodeError as error:
            raise TransferError(f"line {number} is not an exported event: {error}") from None


async def import_events(
    pool: asyncpg.Pool, events: Iterable[ExportedEvent], *, batch_size: int = BATCH_SIZE
) -> ImportReport:
    """Appends `events` (an export, in its order) to the target's log; see the module's
    docstring for when it resumes and when it refuses."""
    stream = iter(events)
    already_there = await _resume_point(pool, stream)
    imported = 0
    for batch in rising_batches(stream, batch_size):
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.copy_records_to_table(
                    "events", records=[_record(e) for e in batch], columns=COLUMNS
                )
                await _index_models(connection, batch)
                await connection.execute(
                    _ADVANCE_POSITIONS_SQL, max(event.position for event in batch)
                )
        except asyncpg.UniqueViolationError as error:
            raise TransferError(
                f"the batch after {already_there + imported} events repeats an event, a "
                f"position or a stream version already there ({error.detail}); is the file "
                "an export, and the target the store it was imported into?"
            ) from None
        imported += len(batch)
    return ImportReport(imported=imported, already_there=already_there)


async def _resume_point(pool: asyncpg.Pool, stream: Iterator[ExportedEvent]) -> int:
    """How many of the file's first events the target holds already (consuming them)."""
    async with pool.acquire() as connection:
        held = int(await connection.fetchval("SELECT count(*) FROM events"))
        last = await connection.fetchval(_LAST_EVENT_SQL)
    if held == 0:
        return 0
    for seen, event in enumerate(stream, start=1):
        if seen == held:
            if event.event_id != last:
                break
            return held
    raise TransferError(
        f"the target already holds {held} events that are not the start of this file; "
        "import into an empty event store (or resume the same file into the store it "
        "was being imported into)"
    )


def rising_batches(stream: Iterator[ExportedEvent], size: int) -> Iterator[list[ExportedEvent]]:
    """Runs of at most `size` events whose positions rise (see the module's docstring)."""
    batch: list[ExportedEvent] = []
    for event in stream:
        if len(batch) == size or (batch and event.position <= batch[-1].position):
            yield batch
            batch = []
        batch.append(event)
    if batch:
        yield batch


def _record(event: ExportedEvent) -> tuple[object, ...]:
    return (
        event.position,
        event.stream_id,
        event.stream_version,
        event.event_id,
        event.event_type,
        event.schema_version,
        bytes(event.data).decode(),
        bytes(event.metadata).decode(),
        event.recorded_at,
    )


async def _index_models(connection: asyncpg.Connection, batch: list[ExportedEvent]) -> None:
    models = [
        _model_decoder.decode(event.data)
        for event in batch
        if event.event_type == "ModelRegistered"
    ]
    if models:
        await connection.execute(
            _MODEL_INDEX_SQL,
            [m.model_id for m in models],
            [m.project_id for m in models],
            [m.name for m in models],
        )


def run_export(database_url: str, output: Path | None) -> int:
    """`aiplatform export-events [--output FILE]` (standard output without one, or with `-`)."""

    async def export(out: IO[bytes]) -> int:
        from aiplatform.eventstore.store import create_pool

        pool = await create_pool(database_url, max_size=1)
        try:
            return await export_events(pool, out)
        finally:
            await pool.close()

    if output is None or str(output) == "-":
        count = asyncio.run(export(sys.stdout.buffer))
    else:
        with output.open("wb") as out:
            count = asyncio.run(export(out))
    print(f"exported {count} events", file=sys.stderr)
    return 0


def run_import(database_url: str, path: Path) -> int:
    """`aiplatform import-events FILE` (`-` reads standard input)."""

    async def load(lines: Iterable[bytes]) -> ImportReport:
        from aiplatform.eventstore.store import create_pool

        pool = await create_pool(database_url, max_size=2)
        try:
            return await import_events(pool, read_lines(lines))
        finally:
            await pool.close()

    try:
        if str(path) == "-":
            report = asyncio.run(load(sys.stdin.buffer))
        else:
            with path.open("rb") as lines:
                report = asyncio.run(load(lines))
    except (TransferError, OSError) as error:
        print(f"aiplatform import-events: {error}", file=sys.stderr)
        return 1
    resumed = f" (resumed after {report.already_there})" if report.already_there else ""
    print(
        f"imported {report.imported} events{resumed}; once the workers run, the read models "
        "catch up from the imported log (docs/operations.md, 'Backups and restore')"
    )
    return 0
