"""A changed projection file is rebuilt beside the version that serves, then switched in: reads
never fail and never see a half-built read model (DESIGN.md, zero-downtime rebuild).

The platform here is its own: a database, a queue namespace, a worker process and a scheduler,
so that switching a read model cannot touch the read models the rest of the run uses."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aiplatform.bootstrap import ensure_admin
from aiplatform.cache import Cache
from aiplatform.config import Settings, load_settings
from aiplatform.domain.jobs import JobStarted
from aiplatform.domain.projects import (
    MemberGranted,
    MemberRevoked,
    ProjectArchived,
    ProjectCreated,
    ProjectDeleted,
    ProjectRestored,
    ProjectUpdated,
    stream_id,
)
from aiplatform.eventstore.codec import EventMetadata, RecordedEvent
from aiplatform.eventstore.migrations import upgrade_to_head
from aiplatform.eventstore.store import EventStore, create_pool
from aiplatform.processes import Child, running
from aiplatform.projectors.projects import ProjectsProjector
from aiplatform.projectors.read_models import (
    PROJECTIONS_DIR_ENV,
    ReadModel,
    install,
    install_generation,
    load_read_model,
    projections_dir,
    secondary_indexes,
)
from aiplatform.projectors.rebuild import MISSING_THROUGH_SQL
from aiplatform.projectors.runner import catch_up
from aiplatform.projectors.set_wise import BatchEvent, SetWiseBuild, decode_batch, microseconds_of
from conftest import ADMIN_DATABASE_URL, ADMIN_PASSWORD
from service_processes import free_port, start_service, terminate, wait_ready

PROJECTS = 4_000
RENAMES = 9  # each project: created, then renamed this many times
STOP_TIMEOUT_S = 20
SWITCH_WITHIN_S = 240
READERS = 4
# Added to the copy of projects.sql: a changed file, which this code's projector still fills.
ADDED_DDL = "\nCREATE INDEX projects_by_name ON projects (name);\n"


def platform_process(
    arguments: list[str], env: dict[str, str], log: Path
) -> AbstractContextManager[Child]:
    return running(arguments[0], arguments, env, output=log, stop_timeout_s=STOP_TIMEOUT_S)


@pytest.fixture
async def own_platform(settings: Settings, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of a platform with a database and queues of its own."""
    name = f"aiplatform_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = ADMIN_DATABASE_URL.rpartition("/")[0] + f"/{name}"
    await asyncio.to_thread(upgrade_to_head, database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")}
    env.update(
        {
            "AIPLATFORM_DATABASE_URL": database_url,
            "AIPLATFORM_REDIS_URL": settings.require_redis_url(),
            "AIPLATFORM_INSTANCE": name,
            "AIPLATFORM_SECRET_KEY": settings.require_secret_key(),
            "AIPLATFORM_DATA_DIR": str(tmp_path / "data"),
        }
    )
    try:
        yield env
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        client = redis.Redis.from_url(settings.require_redis_url())
        keys = list(client.scan_iter(match=f"*{name}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


async def seed_projects(database_url: str, owner_id: str) -> dict[str, tuple[str, int]]:
    """Writes the projects' histories straight to the log; returns each project's final name
    and version."""
    pool = await create_pool(database_url, max_size=4)
    store = EventStore(pool)
    metadata = EventMetadata(actor=owner_id)
    expected: dict[str, tuple[str, int]] = {}

    async def one(index: int) -> None:
        project_id = str(uuid.uuid4())
        events: list[Any] = [
            ProjectCreated(
                project_id=project_id,
                name=f"p{index}-v0",
                description="",
                config={},
                tags=[],
                owner_id=owner_id,
            )
        ]
        events += [
            ProjectUpdated(project_id=project_id, name=f"p{index}-v{n}")
            for n in range(1, RENAMES + 1)
        ]
        await store.append(stream_id(project_id), events, metadata, expected_version=0)
        expected[project_id] = (f"p{index}-v{RENAMES}", RENAMES + 1)

    try:
        for start in range(0, PROJECTS, 50):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 50, PROJECTS))))
    finally:
        await pool.close()
    return expected


async def stats_of(client: httpx.AsyncClient, read_model: str) -> dict[str, Any]:
    response = await client.get("/api/v2/admin/stats")
    assert response.status_code == 200, response.text
    status: dict[str, Any] = next(
        rm for rm in response.json()["data"]["read_models"] if rm["read_model"] == read_model
    )
    return status


async def wait_caught_up(client: httpx.AsyncClient, version: str) -> None:
    deadline = time.monotonic() + SWITCH_WITHIN_S
    while time.monotonic() < deadline:
        status = await stats_of(client, "projects")
        active = status["active"]
        if active["version"] == version and active["events_behind"] == 0:
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"the projects read model did not catch up: {status}")


class Readers:
    """Clients that read projects without pause and check every answer."""

    def __init__(self, client: httpx.AsyncClient, expected: dict[str, tuple[str, int]]):
        self.client = client
        self.expected = expected
        self.ids = list(expected)
        self.reads = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read(n)) for n in range(READERS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _read(self, reader: int) -> None:
        turn = reader
        while not self._stop.is_set():
            turn += READERS
            try:
                if turn % 10 == 0:
                    await self._read_list()
                else:
                    await self._read_one(self.ids[turn % len(self.ids)])
            except httpx.HTTPError as error:
                self.failures.append(f"{type(error).__name__}: {error}")
            self.reads += 1

    async def _read_one(self, project_id: str) -> None:
        response = await self.client.get(f"/api/v2/projects/{project_id}")
        if response.status_code != 200:
            self.failures.append(f"GET {project_id}: {response.status_code} {response.text}")
            return
        data = response.json()["data"]
        if (data["name"], data["version"]) != self.expected[project_id]:
            self.failures.append(f"GET {project_id}: {data['name']} v{data['version']}")

    async def _read_list(self) -> None:
        response = await self.client.get("/api/v2/projects", params={"limit": 100})
        if response.status_code != 200:
            self.failures.append(f"GET projects: {response.status_code} {response.text}")
            return
        body = response.json()
        if body["meta"]["total"] != len(self.expected):
            self.failures.append(f"GET projects: total {body['meta']['total']}")
        for item in body["data"]:
            if (item["name"], item["version"]) != self.expected[item["id"]]:
                self.failures.append(f"GET projects: {item['name']} v{item['version']}")


def start_api_with(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = start_service(["api", "--host", "127.0.0.1", "--port", str(port)], log, **env)
    return process, f"http://127.0.0.1:{port}"


async def table_reads(pool: asyncpg.Pool, read_model: ReadModel) -> int:
    """Scans of the read model's `projects` table so far (the statistics lag by a second)."""
    reads: int = await pool.fetchval(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        "WHERE schemaname = $1 AND relname = 'projects'",
        read_model.schema,
    )
    return reads


@pytest.mark.slow
async def test_a_changed_projection_is_built_beside_the_served_one_then_switched_in(
    own_platform: dict[str, str], tmp_path: Path
) -> None:
    """An API process serves projects while a worker started with a changed `projects.sql`
    builds the new version and switches it in: every read answers 200 with the right data,
    before, during and after the switch, and then the API reads the new tables."""
    env = own_platform
    settings = load_settings(env)
    await ensure_admin(settings, "root", ADMIN_PASSWORD, "root@example.com")
    changed_dir = tmp_path / "projections"
    shutil.copytree(projections_dir(), changed_dir)
    projects_sql = changed_dir / "projects.sql"
    projects_sql.write_text(projects_sql.read_text() + ADDED_DDL)
    old = ReadModel("projects", (projections_dir() / "projects.sql").read_text())
    new = ReadModel("projects", projects_sql.read_text())
    pool = await create_pool(settings.require_database_url(), max_size=2)
    api, base = start_api_with(env, tmp_path / "api.log")
    try:
        with platform_process(["scheduler"], env, tmp_path / "scheduler.log"):
            await asyncio.to_thread(wait_ready, base, api, tmp_path / "api.log")
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                token = await client.post(
                    "/api/v2/auth/token", json={"username": "root", "password": ADMIN_PASSWORD}
                )
                client.headers["Authorization"] = f"Bearer {token.json()['data']['access_token']}"
                me = (await client.get("/api/v2/auth/me")).json()["data"]
                expected = await seed_projects(settings.require_database_url(), me["id"])
                with platform_process(
                    ["worker", "--queues", "projector"], env, tmp_path / "worker-old.log"
                ):
                    await wait_caught_up(client, old.version)

                readers = Readers(client, expected)
                readers.start()
                seen_building: list[dict[str, Any]] = []
                with platform_process(
                    ["worker", "--queues", "projector"],
                    {**env, PROJECTIONS_DIR_ENV: str(changed_dir)},
                    tmp_path / "worker-new.log",
                ):
                    deadline = time.monotonic() + SWITCH_WITHIN_S
                    while True:
                        status = await stats_of(client, "projects")
                        if status["building"] is not None:
                            seen_building.append({**status, "reads": readers.reads})
                        if status["active"]["version"] == new.version:
                            break
                        if time.monotonic() > deadline:
                            log = (tmp_path / "worker-new.log").read_text()[-3000:]
                            pytest.fail(f"no switch within {SWITCH_WITHIN_S} s: {status}\n{log}")
                        await asyncio.sleep(0.02)
                    reads_at_switch = readers.reads
                    # The API moves to the new version within a second; keep reading after.
                    await asyncio.sleep(2)
                    new_tables_before = await table_reads(pool, new)
                    await asyncio.sleep(3)
                    await readers.stop()
                    await asyncio.sleep(1.5)  # the statistics collector's delay
                    new_tables_after = await table_reads(pool, new)
                    final = await stats_of(client, "projects")
                    index = await pool.fetchval(
                        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
                        new.schema,
                        "projects_by_name",
                    )
                    states = dict(
                        await pool.fetch(
                            "SELECT checkpoint, state FROM read_model_versions "
                            "WHERE read_model = 'projects'"
                        )
                    )
    finally:
        terminate(api, 20)
        await pool.close()

    assert readers.failures == []
    assert reads_at_switch > 50
    assert readers.reads > reads_at_switch + 50
    # While it was built, the old version served and admin/stats showed the new one's progress.
    assert seen_building, "admin/stats never showed the version being built"
    building = seen_building[-1]
    assert building["active"]["version"] == old.version
    assert building["building"]["version"] == new.version
    assert 0 <= building["progress"] <= 1
    # After the switch the API reads the new tables: its reads scan them.
    assert new_tables_after > new_tables_before
    assert final["building"] is None
    assert final["active"]["version"] == new.version
    assert final["active"]["events_behind"] == 0
    assert index == 1
    # The old tables stay (retired, still projected) until their grace period ends.
    assert states == {old.checkpoint: "retired", new.checkpoint: "active"}


# Set-wise batches ------------------------------------------------------------------------------

OP_NAMES = ["update", "archive", "restore", "delete", "grant", "revoke"]
PROJECT_OPS = st.lists(
    st.tuples(
        st.sampled_from(OP_NAMES),
        st.integers(0, 3),  # which project
        st.integers(0, 2),  # which user
    ),
    max_size=40,
)


def project_history(ops: list[tuple[str, int, int]]) -> list[RecordedEvent]:
    """Events of four projects: each created before its first other event."""
    ids = [str(uuid.uuid4()) for _ in range(4)]
    users = ["owner", "u1", "u2"]
    versions = [0] * 4
    events: list[RecordedEvent] = []
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def record(project: int, event: Any) -> None:
        versions[project] += 1
        events.append(
            RecordedEvent(
                stream_id=stream_id(ids[project]),
                stream_version=versions[project],
                global_position=len(events) + 1,
                event_id=str(uuid.uuid4()),
                event_type=type(event).__name__,
                schema_version=1,
                event=event,
                metadata=EventMetadata(actor="test"),
                recorded_at=at + timedelta(seconds=len(events)),
            )
        )

    for n, (op, project, user) in enumerate(ops):
        project_id = ids[project]
        if versions[project] == 0:
            record(
                project,
                ProjectCreated(
                    project_id=project_id,
                    name=f"p{project}",
                    description="d",
                    config={"k": project},
                    tags=["t"],
                    owner_id="owner",
                ),
            )
        match op:
            case "update":
                record(project, ProjectUpdated(project_id=project_id, name=f"n{n}", tags=[str(n)]))
            case "archive":
                record(project, ProjectArchived(project_id=project_id))
            case "restore":
                record(project, ProjectRestored(project_id=project_id))
            case "delete":
                record(project, ProjectDeleted(project_id=project_id))
            case "grant":
                record(
                    project,
                    MemberGranted(project_id=project_id, user_id=users[user], role="viewer"),
                )
            case "revoke":
                record(project, MemberRevoked(project_id=project_id, user_id=users[user]))
    return events


async def table_rows(pool: asyncpg.Pool, projector: ProjectsProjector) -> tuple[Any, Any]:
    projects = await pool.fetch(f"SELECT * FROM {projector.table} ORDER BY id")
    members = await pool.fetch(f"SELECT * FROM {projector.members} ORDER BY project_id, user_id")
    return [tuple(r) for r in projects], [tuple(r) for r in members]


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=PROJECT_OPS, cuts=st.lists(st.integers(1, 15), min_size=1, max_size=6))
async def test_set_wise_batches_leave_the_projects_tables_as_event_by_event(
    pool: asyncpg.Pool, ops: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    ddl = (projections_dir() / "projects.sql").read_text()
    # Read models of their own name: no worker of the run projects them.
    one_by_one = ProjectsProjector(ReadModel(f"pbatch{uuid.uuid4().hex[:8]}", ddl))
    set_wise = ProjectsProjector(ReadModel(f"pbatch{uuid.uuid4().hex[:8]}", ddl))
    events = project_history(ops)
    async with pool.acquire() as connection:
        for projector in (one_by_one, set_wise):
            await install(connection, projector.read_model)
        async with connection.transaction():
            for event in events:
                await one_by_one.apply(connection, event)
            start, turn = 0, 0
            while start < len(events):
                size = cuts[turn % len(cuts)]
                batch = [
                    BatchEvent(
                        e.stream_version,
                        e.global_position,
                        microseconds_of(e.recorded_at),
                        e.event,
                    )
                    for e in events[start : start + size]
                ]
                await set_wise.apply_batch(connection, batch)
                start, turn = start + size, turn + 1
    try:
        assert await table_rows(pool, set_wise) == await table_rows(pool, one_by_one)
    finally:
        async with pool.acquire() as connection:
            for projector in (one_by_one, set_wise):
                await connection.execute(f"DROP SCHEMA {projector.read_model.schema} CASCADE")


async def position_of(pool: asyncpg.Pool, projector: ProjectsProjector) -> int:
    position: int = await pool.fetchval(
        "SELECT last_global_position FROM projection_checkpoints WHERE projection = $1",
        projector.read_model.checkpoint,
    )
    return position


async def index_names(pool: asyncpg.Pool, read_model: ReadModel) -> set[str]:
    rows = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1", read_model.schema
    )
    return {row["indexname"] for row in rows}


async def test_two_set_wise_builders_of_one_version_apply_every_event_once(
    own_platform: dict[str, str],
) -> None:
    """Two workers build one version in turns, each reading its next batch ahead: a batch read
    ahead is dropped when the other one applied it meanwhile, so the tables end up exactly as
    event-by-event projection leaves them. The secondary indexes, dropped while the empty
    tables are filled, are all there before the switch."""
    pool = await create_pool(own_platform["AIPLATFORM_DATABASE_URL"], max_size=6)
    try:
        store = EventStore(pool)
        chooser = random.Random(7)
        ops = [
            (chooser.choice(OP_NAMES), chooser.randrange(4), chooser.randrange(3))
            for _ in range(300)
        ]
        history = project_history(ops)
        for recorded in history:
            await store.append(
                recorded.stream_id,
                [recorded.event],
                EventMetadata(actor="owner"),
                expected_version=recorded.stream_version - 1,
            )
        served = ProjectsProjector(ReadModel("projects", load_read_model("projects").ddl))
        async with pool.acquire() as connection:
            await install(connection, served.read_model)
        # Another database's open transaction can hold the cluster's horizon back for a while.
        head = await pool.fetchval("SELECT max(global_position) FROM events")
        while await position_of(pool, served) < head:
            await catch_up(pool, served, Cache(None), batch_size=1_000)
        async with pool.acquire() as connection:
            copy = ProjectsProjector(await install_generation(connection, served.read_model))
        all_indexes = await index_names(pool, copy.read_model)
        secondary = set(secondary_indexes(copy.read_model))
        assert secondary
        assert secondary <= all_indexes

        first = SetWiseBuild(pool, copy, batch_size=7)
        second = SetWiseBuild(pool, copy, batch_size=7)
        async with first, second:
            assert await index_names(pool, copy.read_model) == all_indexes - secondary
            turn = 0
            while await position_of(pool, copy) < head:
                await (first if turn % 2 == 0 else second).apply_next()
                turn += 1
            await second.before_switch()
        assert await index_names(pool, copy.read_model) == all_indexes
        assert await table_rows(pool, copy) == await table_rows(pool, served)
        applied = await pool.fetchval(
            "SELECT events_applied FROM projection_checkpoints WHERE projection = $1",
            copy.read_model.checkpoint,
        )
        assert applied == len(history)
    finally:
        await pool.close()


async def test_a_batch_decodes_in_log_order_with_older_versions_upcast(
    pool: asyncpg.Pool,
) -> None:
    """Each event type's data is decoded in one call and its versions, positions and times
    from PostgreSQL's binary arrays; the events come back by position across the types, and
    a v1 `JobStarted` through its upcaster. The rows are made by PostgreSQL itself, as the
    batch query returns them."""
    rows = await pool.fetch(
        """
        SELECT event_type, schema_version::int2,
               array_send(stream_versions::int8[]) AS stream_versions,
               array_send(positions::int8[]) AS positions,
               array_send(recorded_at::timestamptz[]) AS recorded_at, events
          FROM (VALUES
            ('ProjectArchived', 1, '{2,3}', '{12,15}',
             '{"1970-01-01 00:00:01+00","2026-11-30 05:31:27.000001+00"}',
             '[{"project_id":"p"},{"project_id":"p"}]'),
            ('ProjectCreated', 1, NULL, NULL, NULL, NULL),
            ('JobStarted', 1, '{1}', '{13}', '{"1999-12-31 23:59:59.999999+00"}',
             '[{"job_id":"j","attempt":1,"worker":"w","devices":["cuda:0"]}]')
          ) AS batch(event_type, schema_version, stream_versions, positions, recorded_at,
                     events)
        """
    )
    batch = decode_batch(rows)
    assert [event.global_position for event in batch] == [12, 13, 15]
    assert batch[0] == BatchEvent(2, 12, 1_000_000, ProjectArchived(project_id="p"))
    assert batch[1].event == JobStarted(
        job_id="j", attempt=1, worker="w", devices=["cuda:0"], accelerator="cuda"
    )
    # Before and after PostgreSQL's own epoch (2000-01-01), to the microsecond.
    assert batch[1].recorded_at == datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert batch[2].stream_version == 3
    assert batch[2].recorded_at == datetime(2026, 11, 30, 5, 31, 27, 1, tzinfo=UTC)


async def test_waiting_for_a_position_reads_only_the_events_not_yet_applied(
    own_platform: dict[str, str],
) -> None:
    """A build that waits for its head asks whether an event up to a position is still to be
    applied: the question is answered from the catch-up index, starting at the checkpoint,
    never by filtering the whole log (a third of a second per million events, asked again
    and again while it waits)."""
    pool = await create_pool(own_platform["AIPLATFORM_DATABASE_URL"], max_size=2)
    try:
        metadata = msgspec.json.encode(EventMetadata(actor="a")).decode()
        await pool.copy_records_to_table(
            "events",
            columns=("stream_id", "stream_version", "event_id", "event_type", "data", "metadata"),
            records=[
                (f"project-{n}", 1, uuid.uuid4(), "ProjectArchived", "{}", metadata)
                for n in range(20_000)
            ],
        )
        await pool.execute("ANALYZE events")
        plan = await pool.fetchval(
            f"EXPLAIN (FORMAT JSON) {MISSING_THROUGH_SQL}", "projects:anything", 10_000
        )
    finally:
        await pool.close()
    scans = [
        (node["Node Type"], node.get("Index Name"))
        for node in plan_nodes(json.loads(plan)[0]["Plan"])
        if node.get("Relation Name") == "events"
    ]
    assert scans == [("Index Only Scan", "events_catch_up")]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)
