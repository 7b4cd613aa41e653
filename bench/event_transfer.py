"""export-events / import-events throughput against the bare database work under them.

A scratch source store gets `--events` ProjectCreated events (one stream each); then, in the
same run and on the same servers:

- **export**: `export_events` of the whole log into memory (JSON lines) against a bare cursor
  reading the same rows in the same order without encoding them;
- **import**: `import_events` of that export into an empty store against a bare
  `COPY` of the same rows, already built as tuples, into another empty store.

    .venv/bin/python bench/event_transfer.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
import uuid
from collections.abc import Awaitable

import asyncpg

from aiplatform.eventstore.codec import encode
from aiplatform.eventstore.store import create_pool
from aiplatform.eventstore.transfer import (
    BATCH_SIZE,
    COLUMNS,
    export_events,
    import_events,
    read_lines,
)
from benchlib import METADATA, project_created, scratch_database

# The rows an export reads, in its order, as plain columns.
BARE_SQL = """
SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version,
       data::text, metadata::text, recorded_at
  FROM events ORDER BY transaction_id, global_position
"""


async def _fill(pool: asyncpg.Pool, count: int) -> None:
    metadata = encode(METADATA)
    async with pool.acquire() as connection:
        for start in range(0, count, 50_000):
            rows = []
            for _ in range(min(50_000, count - start)):
                event = project_created()
                rows.append(
                    (
                        f"project-{event.project_id}",
                        1,
                        uuid.uuid4(),
                        "ProjectCreated",
                        1,
                        encode(event),
                        metadata,
                    )
                )
            await connection.copy_records_to_table("events", records=rows, columns=COLUMNS[1:8])


async def _bare_read(pool: asyncpg.Pool) -> int:
    count = 0
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        async for _ in connection.cursor(BARE_SQL, prefetch=BATCH_SIZE):
            count += 1
    return count


async def _bare_copy(pool: asyncpg.Pool, rows: list[tuple[object, ...]]) -> None:
    for start in range(0, len(rows), BATCH_SIZE):
        async with pool.acquire() as connection, connection.transaction():
            await connection.copy_records_to_table(
                "events", records=rows[start : start + BATCH_SIZE], columns=COLUMNS
            )


async def _timed(label: str, count: int, work: Awaitable[object]) -> float:
    started = time.perf_counter()
    await work
    rate = count / (time.perf_counter() - started)
    print(f"{label:<32} {rate:>10,.0f} events/s")
    return rate


async def run(source_url: str, target_url: str, baseline_url: str, count: int) -> None:
    source, target, baseline = [
        await create_pool(url, max_size=2) for url in (source_url, target_url, baseline_url)
    ]
    try:
        await _fill(source, count)
        export = io.BytesIO()
        bare_read = await _timed("bare cursor read", count, _bare_read(source))
        exported = await _timed("export_events", count, export_events(source, export))
        lines = export.getvalue().splitlines()
        rows = [
            (
                e.position,
                e.stream_id,
                e.stream_version,
                e.event_id,
                e.event_type,
                e.schema_version,
                bytes(e.data).decode(),
                bytes(e.metadata).decode(),
                e.recorded_at,
            )
            for e in read_lines(lines)
        ]
        bare_copy = await _timed("bare COPY of built rows", count, _bare_copy(baseline, rows))
        imported = await _timed("import_events", count, import_events(target, read_lines(lines)))
        print(f"export / bare read: {exported / bare_read:.2f}")
        print(f"import / bare COPY: {imported / bare_copy:.2f}")
        print(f"export size: {len(export.getvalue()) / count:.0f} bytes per event")
    finally:
        for pool in (source, target, baseline):
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    arguments = parser.parse_args()
    with (
        scratch_database() as (_, source),
        scratch_database() as (_, target),
        scratch_database() as (_, baseline),
    ):
        asyncio.run(run(source, target, baseline, arguments.events))


if __name__ == "__main__":
    main()
