"""`aiplatform replay --projection NAME|all` rebuilds read models from the log beside the served
ones, with a progress bar, switches them in and drops the old tables."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from aiplatform.domain.projects import ProjectCreated, ProjectUpdated, stream_id
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.migrations import upgrade_to_head
from aiplatform.eventstore.store import EventStore, create_pool
from aiplatform.projectors.read_models import install, load_read_model
from aiplatform.projectors.registry import PROJECTOR_CLASSES
from conftest import ADMIN_DATABASE_URL

pytestmark = pytest.mark.slow

PROJECTS = 300


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """A database of its own: replay switches read models, which the run's others must keep."""
    name = f"aiplatform_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_DATABASE_URL.rpartition("/")[0] + f"/{name}"
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def replay(database_url: str, projection: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")}
    env["AIPLATFORM_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "aiplatform", "replay", "--projection", projection],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_replay_rebuilds_a_read_model_from_the_log_and_switches_it_in(
    own_database: str,
) -> None:
    pool = await create_pool(own_database, max_size=2)
    try:
        async with pool.acquire() as connection:
            for name in PROJECTOR_CLASSES:
                await install(connection, load_read_model(name))
        store = EventStore(pool)
        names = {}
        for index in range(PROJECTS):
            project_id = str(uuid.uuid4())
            await store.append(
                stream_id(project_id),
                [
                    ProjectCreated(
                        project_id=project_id,
                        name=f"p{index}",
                        description="",
                        config={},
                        tags=[],
                        owner_id="owner",
                    ),
                    ProjectUpdated(project_id=project_id, name=f"p{index}-renamed"),
                ],
                EventMetadata(actor="owner"),
                expected_version=0,
            )
            names[uuid.UUID(project_id)] = f"p{index}-renamed"
        served = load_read_model("projects")
        # Nothing projected these events into the served tables: only the log has them.
        assert await pool.fetchval(f"SELECT count(*) FROM {served.table('projects')}") == 0

        result = await asyncio.to_thread(replay, own_database, "projects")

        assert result.returncode == 0, result.stderr
        assert "events/s" in result.stderr
        assert "ETA" in result.stderr
        assert "projects: switched in" in result.stderr
        assert f"dropped retired tables {served.schema}" in result.stderr
        active = await pool.fetchrow(
            "SELECT version, generation, checkpoint FROM read_model_versions "
            "WHERE read_model = 'projects' AND state = 'active'"
        )
        assert (active["version"], active["generation"]) == (served.version, 1)
        schema = f"{served.schema}_g1"
        rows = await pool.fetch(f"SELECT id, name FROM {schema}.projects")
        assert {row["id"]: row["name"] for row in rows} == names
        # Times are exact to the microsecond: creation and last change are the events' own.
        mismatched = await pool.fetchval(
            f"SELECT count(*) FROM {schema}.projects p "
            "JOIN events c ON c.stream_id = 'project-' || p.id AND c.stream_version = 1 "
            "JOIN events u ON u.stream_id = 'project-' || p.id AND u.stream_version = 2 "
            "WHERE p.created_at <> c.recorded_at OR p.updated_at <> u.recorded_at"
        )
        assert mismatched == 0
        assert not await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", served.schema
        )
        others = await pool.fetchval(
            "SELECT count(*) FROM read_model_versions WHERE read_model <> 'projects' "
            "AND state = 'active' AND generation = 0"
        )
        assert others == len(PROJECTOR_CLASSES) - 1
    finally:
        await pool.close()


async def test_replay_refuses_an_unknown_read_model(own_database: str) -> None:
    result = await asyncio.to_thread(replay, own_database, "nonsense")
    assert result.returncode == 2
    assert "unknown read model 'nonsense'" in result.stderr
    assert "projects" in result.stderr
