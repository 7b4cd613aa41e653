"""Replay speed: events applied per second when the projects read model is rebuilt from the log,
against reading and decoding the same rows with a bare SELECT, in the same run.

The log is filled with COPY (one transaction) with the event mix of projects: each project is
created, renamed, described, tagged, configured, gets two members, loses one, is archived
and restored (10 events). Projects are written in windows of 1,500 whose events interleave, as
concurrent users' do; a window's 15,000 events straddle the rebuild's 50,000-event batches, so
most batches also touch projects of the batch before (read back, folded, rewritten).

- rebuild: `aiplatform replay`'s path: a fresh copy of the projects read model is installed
  beside the active one and built from position zero (50,000-event batches read in catch-up
  order, each read and decoded while the one before is folded and written set-wise, secondary
  indexes built once at the end), then switched in.
- baseline: `SELECT event_type, schema_version, data` over the whole log in the same order
  through a cursor (5,000-row prefetch), each row decoded to its event struct with msgspec.

Rounds alternate the two sides; the ratio is the median of the per-round ratios.

    .venv/bin/python bench/replay_speed.py [--events 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg

from aiplatform.cache import Cache
from aiplatform.domain.projects import (
    MemberGranted,
    MemberRevoked,
    ProjectArchived,
    ProjectCreated,
    ProjectRestored,
    ProjectUpdated,
)
from aiplatform.eventstore.codec import Event, decode_event, encode
from aiplatform.eventstore.store import create_pool
from aiplatform.projectors.read_models import drop_retired, install, load_read_model
from aiplatform.projectors.rebuild import ReadModelVersions
from aiplatform.projectors.registry import PROJECTOR_CLASSES
from aiplatform.projectors.replay import target_version
from benchlib import METADATA, median, print_ratio, scratch_database

EVENTS_PER_PROJECT = 10
WINDOW = 1_500  # projects whose events interleave (15,000 events: not a multiple of a batch)
TARGET = 0.5
COLUMNS = ("stream_id", "stream_version", "event_id", "event_type", "schema_version", "data")


def project_history(project_id: str, index: int) -> list[Event]:
    owner, first, second = "owner-1", f"user-{index % 97}", f"user-{index % 89 + 100}"
    return [
        ProjectCreated(
            project_id=project_id,
            name=f"project {index}",
            description="",
            config={"seed": index},
            tags=["bench"],
            owner_id=owner,
        ),
        ProjectUpdated(project_id=project_id, name=f"project {index} (renamed)"),
        ProjectUpdated(project_id=project_id, description="a project of the replay benchmark"),
        ProjectUpdated(project_id=project_id, tags=["bench", f"t{index % 13}"]),
        MemberGranted(project_id=project_id, user_id=first, role="developer"),
        MemberGranted(project_id=project_id, user_id=second, role="viewer"),
        ProjectUpdated(project_id=project_id, config={"seed": index, "lr": 0.001}),
        MemberRevoked(project_id=project_id, user_id=second),
        ProjectArchived(project_id=project_id),
        ProjectRestored(project_id=project_id),
    ]


def log_rows(events: int) -> Iterator[list[tuple[Any, ...]]]:
    """The log's rows, a window of interleaved projects at a time."""
    projects = events // EVENTS_PER_PROJECT
    for start in range(0, projects, WINDOW):
        histories = []
        for index in range(start, min(start + WINDOW, projects)):
            project_id = str(uuid.uuid4())
            histories.append((f"project-{project_id}", project_history(project_id, index)))
        yield [
            (
                stream,
                version + 1,
                uuid.uuid4(),
                type(history[version]).__name__,
                1,
                encode(history[version]),
            )
            for version in range(EVENTS_PER_PROJECT)
            for stream, history in histories
        ]


async def fill_log(pool: asyncpg.Pool, events: int) -> int:
    metadata = encode(METADATA)
    written = 0
    async with pool.acquire() as connection, connection.transaction():
        for rows in log_rows(events):
            await connection.copy_records_to_table(
                "events",
                columns=(*COLUMNS, "metadata"),
                records=[(*row, metadata) for row in rows],
            )
            written += len(rows)
    await pool.execute("VACUUM ANALYZE events")
    return written


async def read_and_decode(pool: asyncpg.Pool) -> float:
    """Events per second of the bare read: SELECT in catch-up order, decode every row."""
    started = time.perf_counter()
    count = 0
    async with pool.acquire() as connection, connection.transaction():
        cursor = connection.cursor(
            "SELECT event_type, schema_version, data::text AS data FROM events "
            "ORDER BY transaction_id, global_position",
            prefetch=5_000,
        )
        async for row in cursor:
            decode_event(row["event_type"], row["schema_version"], row["data"])
            count += 1
    return count / (time.perf_counter() - started)


async def rebuild(pool: asyncpg.Pool, events: int) -> float:
    """Events per second of a rebuild of the projects read model, switch included."""
    async with pool.acquire() as connection:
        target = await target_version(connection, "projects")
    last = await pool.fetchval("SELECT max(global_position) FROM events")
    started = time.perf_counter()
    switched = await ReadModelVersions(pool, Cache(None)).build(target, through_position=last)
    elapsed = time.perf_counter() - started
    assert switched, "the rebuilt version was not switched in"
    count = await pool.fetchval(f"SELECT count(*) FROM {target.table('projects')}")
    assert count == events // EVENTS_PER_PROJECT, f"{count} projects after the rebuild"
    async with pool.acquire() as connection:
        await drop_retired(connection, grace_s=0)
    return events / elapsed


async def measure(url: str, events: int, rounds: int) -> None:
    pool = await create_pool(url, max_size=4)
    try:
        async with pool.acquire() as connection:
            for name in PROJECTOR_CLASSES:
                await install(connection, load_read_model(name))
        started = time.perf_counter()
        written = await fill_log(pool, events)
        print(f"log: {written:,} events written with COPY in {time.perf_counter() - started:.1f} s")
        rebuilt, read = [], []
        for round_number in range(1, rounds + 1):
            read.append(await read_and_decode(pool))
            rebuilt.append(await rebuild(pool, written))
            print(
                f"round {round_number}: rebuild {rebuilt[-1]:,.0f} events/s, "
                f"SELECT + decode {read[-1]:,.0f} events/s"
            )
        print(
            f"median: rebuild {median(rebuilt):,.0f} events/s, "
            f"SELECT + decode {median(read):,.0f} events/s"
        )
        print_ratio("rebuild / (SELECT + decode)", rebuilt, read, TARGET)
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    with scratch_database() as (_, database_url):
        asyncio.run(measure(database_url, arguments.events, arguments.rounds))
