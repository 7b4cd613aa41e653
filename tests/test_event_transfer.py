"""export-events / import-events: a log moved to a fresh cluster keeps every event and its
catch-up order, and the read models built from it are the same."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiplatform.aggregates import EXPERIMENTS, PROJECTS
from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.config import Settings
from aiplatform.domain import experiments, projects
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.migrations import upgrade_to_head
from aiplatform.eventstore.store import EventStore, create_pool
from aiplatform.eventstore.transfer import (
    ExportedEvent,
    TransferError,
    export_events,
    import_events,
    read_lines,
    rising_batches,
    run_export,
    run_import,
)
from aiplatform.projectors.read_models import install
from aiplatform.projectors.registry import all_projectors
from aiplatform.projectors.runner import catch_up
from conftest import ADMIN_DATABASE_URL, REDIS_URL

ALICE = CommandContext(metadata=EventMetadata(actor=str(uuid.uuid4()), client_ip="10.0.0.7"))
# Quotes, backslashes, a newline, a control character and non-ASCII must all arrive verbatim.
TRICKY_NAME = 'atlas 2 "the \\ one"\n\x01 ünïcödé ✓'
_ROWS = (
    "SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, "
    "data::text, metadata::text, recorded_at FROM events ORDER BY transaction_id, global_position"
)


class Database:
    def __init__(self, url: str, pool: asyncpg.Pool):
        self.url = url
        self.pool = pool


async def _fresh_database() -> tuple[str, str]:
    name = f"aiplatform_transfer_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = ADMIN_DATABASE_URL.rpartition("/")
    return name, f"{base}/{name}"


@pytest.fixture
async def databases() -> AsyncIterator[list[Database]]:
    """Two fresh, migrated event stores: the source cluster's and the target's."""
    made: list[tuple[str, Database]] = []
    for _ in range(2):
        name, url = await _fresh_database()
        await asyncio.to_thread(upgrade_to_head, url)
        made.append((name, Database(url, await create_pool(url, max_size=4))))
    yield [database for _, database in made]
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        for name, database in made:
            await database.pool.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _history(pool: asyncpg.Pool) -> list[str]:
    """Events that a command handler writes, and two raw ones whose transaction ids order them
    unlike their positions: the older transaction inserted last."""
    commands = CommandHandler(EventStore(pool))
    project_id = str(uuid.uuid4())
    await commands.handle(
        PROJECTS,
        project_id,
        projects.CreateProject(project_id=project_id, name="atlas", owner_id=str(uuid.uuid4())),
        ALICE,
    )
    await commands.handle(
        PROJECTS, project_id, projects.UpdateProject(project_id=project_id, name=TRICKY_NAME), ALICE
    )
    for name in ("baseline", "tuned"):
        experiment_id = str(uuid.uuid4())
        command = experiments.CreateExperiment(
            experiment_id=experiment_id, project_id=project_id, name=name
        )
        await commands.handle(EXPERIMENTS, experiment_id, command, ALICE)
    older = await pool.acquire()
    try:
        transaction = older.transaction()
        await transaction.start()
        await older.fetchval("SELECT pg_current_xact_id()")
        await _raw_job_start(pool)
        await _raw_job_start(older)
        await transaction.commit()
    finally:
        await pool.release(older)
    return [str(r["event_id"]) for r in await pool.fetch(_ROWS)]


async def _raw_job_start(database: asyncpg.Pool | asyncpg.Connection) -> None:
    """A JobStarted as the code before its v2 stored it."""
    job_id = str(uuid.uuid4())
    await database.execute(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, "
        "data, metadata) VALUES ($1, 1, $2, 'JobStarted', 1, $3::jsonb, $4::jsonb)",
        f"job-{job_id}",
        uuid.uuid4(),
        json.dumps({"job_id": job_id, "attempt": 1, "worker": "w", "devices": ["cpu"]}),
        json.dumps({"actor": "system:worker"}),
    )


async def _all_readable(pool: asyncpg.Pool) -> None:
    """Waits until no transaction still running anywhere in the cluster (another test's, in
    another database) keeps the log's last events from catch-up readers."""
    deadline = time.monotonic() + 60
    while await pool.fetchval(
        "SELECT count(*) FROM events "
        "WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())"
    ):
        assert time.monotonic() < deadline, "a transaction held the catch-up horizon for 60 s"
        await asyncio.sleep(0.1)


async def _read_models(database: Database, settings: Settings) -> dict[str, list[Any]]:
    """Every read model built from the log, table by table."""
    await _all_readable(database.pool)
    cache = Cache(connect(REDIS_URL), key_prefix(f"{settings.instance}-{uuid.uuid4().hex}"))
    state: dict[str, list[Any]] = {}
    try:
        for projector in all_projectors():
            async with database.pool.acquire() as connection:
                await install(connection, projector.read_model)
            await catch_up(database.pool, projector, cache)
            tables = await database.pool.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
                "ORDER BY table_name",
                projector.read_model.schema,
            )
            for table in tables:
                qualified = projector.read_model.table(table["table_name"])
                rows = await database.pool.fetch(f"SELECT * FROM {qualified}")
                state[qualified] = sorted(dict(row).__repr__() for row in rows)
    finally:
        await cache.close()
    return state


async def test_a_log_moved_to_a_fresh_cluster_keeps_its_events_order_and_read_models(
    databases: list[Database], settings: Settings
) -> None:
    source, target = databases
    order = await _history(source.pool)
    exported = io.BytesIO()

    count = await export_events(source.pool, exported)
    report = await import_events(
        target.pool, read_lines(exported.getvalue().splitlines()), batch_size=3
    )

    assert count == report.imported == len(order) == 6
    assert order == [str(r["event_id"]) for r in await target.pool.fetch(_ROWS)]
    source_rows = [tuple(r) for r in await source.pool.fetch(_ROWS)]
    target_rows = [tuple(r) for r in await target.pool.fetch(_ROWS)]
    assert source_rows == target_rows
    job_positions = [
        r["global_position"]
        for r in await source.pool.fetch(
            "SELECT global_position FROM events WHERE stream_id LIKE 'job-%' "
            "ORDER BY transaction_id, global_position"
        )
    ]
    assert job_positions[0] > job_positions[1], "the history should commit out of order"
    built = await _read_models(target, settings)
    assert built == await _read_models(source, settings)
    assert any("atlas 2" in row for rows in built.values() for row in rows)
    assert sum(len(rows) for rows in built.values()) >= 3  # the project and two experiments


async def test_an_interrupted_import_resumes_and_a_foreign_log_is_refused(
    databases: list[Database],
) -> None:
    source, target = databases
    await _history(source.pool)
    exported = io.BytesIO()
    await export_events(source.pool, exported)
    lines = exported.getvalue().splitlines()

    first = await import_events(target.pool, read_lines(lines[:4]), batch_size=2)
    resumed = await import_events(target.pool, read_lines(lines), batch_size=2)
    again = await import_events(target.pool, read_lines(lines))

    assert (first.imported, resumed.already_there, resumed.imported) == (4, 4, 2)
    assert (again.already_there, again.imported) == (6, 0)
    assert await target.pool.fetchval("SELECT count(*) FROM events") == 6
    with pytest.raises(TransferError, match="not the start of this file"):
        await import_events(target.pool, read_lines(lines[1:]))
    with pytest.raises(TransferError, match="line 2 is not an exported event"):
        list(read_lines([lines[0], b'{"stream_id": "x"}']))


async def test_the_commands_stream_a_file_between_two_databases(
    databases: list[Database], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = databases
    order = await _history(source.pool)
    export = tmp_path / "events.jsonl"

    assert await asyncio.to_thread(run_export, source.url, export) == 0
    assert await asyncio.to_thread(run_import, target.url, export) == 0

    assert "imported 6 events" in capsys.readouterr().out
    assert order == [str(r["event_id"]) for r in await target.pool.fetch(_ROWS)]
    assert await asyncio.to_thread(run_import, target.url, tmp_path / "missing.jsonl") == 1
    appended = await EventStore(target.pool).append(
        "project-after-the-import",
        [projects.ProjectArchived(project_id="after")],
        ALICE.metadata,
        expected_version=0,
    )
    assert appended.first_position > max(json.loads(line)["position"] for line in export.open())


@given(
    st.lists(st.integers(min_value=1, max_value=50), max_size=60),
    st.integers(min_value=1, max_value=8),
)
def test_batches_keep_the_order_and_rise_in_position(positions: list[int], size: int) -> None:
    """A batch commits as one transaction, whose events readers order by position: each batch
    must rise, or the target would reorder the file."""
    events = [_line(position) for position in positions]
    batches = list(rising_batches(iter(events), size))
    assert [e for batch in batches for e in batch] == events
    for batch in batches:
        assert 1 <= len(batch) <= size
        assert all(a.position < b.position for a, b in itertools.pairwise(batch))


def _line(position: int) -> ExportedEvent:
    return ExportedEvent(
        position=position,
        stream_id=f"s-{position}",
        stream_version=1,
        event_id=uuid.uuid4(),
        event_type="ProjectArchived",
        schema_version=1,
        data=msgspec.Raw(b"{}"),
        metadata=msgspec.Raw(b"{}"),
        recorded_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
