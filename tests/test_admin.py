"""Platform figures (`platform_stats`) and the admin routes that show them."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import redis
from alembic import command
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.cache import Cache, key_prefix
from aiplatform.config import Settings
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.migration_status import migration_status
from aiplatform.eventstore.migrations import alembic_config, upgrade_to_head
from aiplatform.eventstore.store import EventStore
from aiplatform.monitoring.records import BEAT_TTL_S
from aiplatform.platform_stats import (
    dramatiq_namespace,
    projection_lags,
    queue_depths,
    workers_alive,
)
from aiplatform.projectors.read_models import install, install_generation, load_read_model
from aiplatform.projectors.runner import catch_up
from aiplatform.workers.broker import QUEUES
from aiplatform.workers.monitoring import Monitor
from conftest import ADMIN_DATABASE_URL, login, make_user
from probe import ProbeProjector, ProbeRecorded

META = EventMetadata(actor="test")


async def test_projection_lag_counts_the_events_after_the_checkpoint(pool: asyncpg.Pool) -> None:
    projector = ProbeProjector(f"probe{uuid.uuid4().hex[:8]}")
    async with pool.acquire() as connection:
        await install(connection, projector.read_model)
    await catch_up(pool, projector, Cache(None))
    store = EventStore(pool)
    stream = f"probe-{uuid.uuid4()}"
    await store.append(
        stream, [ProbeRecorded(probe=stream, n=i) for i in range(3)], META, expected_version=0
    )

    lag = next(
        item for item in await projection_lags(pool) if item.read_model == projector.read_model.name
    )
    assert lag.state == "active"
    assert lag.version == projector.read_model.version
    # The other tests of the run append too, so at least ours are behind.
    assert lag.events_behind >= 3
    assert lag.seconds_behind >= 0.0

    # Transactions of other databases of the cluster can hold the horizon back for a while.
    deadline = time.monotonic() + 60
    while True:
        await catch_up(pool, projector, Cache(None))
        lag = next(
            item
            for item in await projection_lags(pool)
            if item.read_model == projector.read_model.name
        )
        if lag.events_applied >= 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert lag.events_applied == 3


async def test_queue_depths_count_waiting_delayed_and_dead_messages(settings: Settings) -> None:
    instance = f"stats{uuid.uuid4().hex[:8]}"
    namespace = dramatiq_namespace(instance)
    broker = RedisBroker(url=settings.require_redis_url(), namespace=namespace)  # type: ignore[no-untyped-call]
    client = redis.asyncio.Redis.from_url(settings.require_redis_url())
    try:
        broker.declare_queue("training")
        for _ in range(2):
            broker.enqueue(Message("training", "nobody", (), {}, {}))
        broker.enqueue(Message("training", "nobody", (), {}, {}), delay=60_000)
        await client.zadd(f"{namespace}:training.XQ", {"dead-message": time.time()})

        depths = {d.queue: d for d in await queue_depths(client, namespace, ["training", "data"])}
        assert (depths["training"].ready, depths["training"].delayed) == (2, 1)
        assert depths["training"].dead == 1
        assert (depths["data"].ready, depths["data"].delayed, depths["data"].dead) == (0, 0, 0)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        broker.close()


async def test_workers_alive_are_those_that_beat_recently(settings: Settings) -> None:
    prefix = key_prefix(f"stats{uuid.uuid4().hex[:8]}")
    sync_client = redis.Redis.from_url(settings.require_redis_url())
    client = redis.asyncio.Redis.from_url(settings.require_redis_url())
    try:
        now = time.time()
        Monitor(sync_client, prefix, queues=lambda: ["projector", "data"], host="h1").beat(now)
        Monitor(sync_client, prefix, queues=lambda: ["training"], host="h2").beat(
            now - BEAT_TTL_S - 1
        )

        alive = await workers_alive(client, prefix, now)
        assert [(beat.host, beat.queues) for beat in alive] == [("h1", ["projector", "data"])]
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        sync_client.close()


async def test_stats_show_counts_log_read_models_queues_and_health(
    client: AsyncTestClient[Litestar],
) -> None:
    created = await client.post("/api/v2/projects", json={"name": f"stats-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201, created.text

    response = await client.get("/api/v2/admin/stats")
    assert response.status_code == 200, response.text
    stats = response.json()["data"]
    assert set(stats["resources"]) == {
        "projects",
        "experiments",
        "datasets",
        "models",
        "jobs",
        "users",
        "roles",
    }
    assert stats["resources"]["users"] >= 1  # the admin
    assert stats["events"]["total"] >= 2
    assert len(stats["events"]["per_hour"]) == 24
    assert stats["events"]["per_hour"][-1]["events"] >= 1
    projects = next(rm for rm in stats["read_models"] if rm["read_model"] == "projects")
    assert projects["active"]["version"] == load_read_model("projects").version
    assert projects["building"] is None
    assert {"events_behind", "seconds_behind"} <= set(projects["active"])
    assert [q["queue"] for q in stats["queues"]] == list(QUEUES)
    assert stats["database"]["ok"] is True
    assert stats["redis"]["ok"] is True


async def test_stats_and_migrate_are_for_admins_only(
    client: AsyncTestClient[Litestar], anonymous: AsyncTestClient[Litestar]
) -> None:
    _, username, password = await make_user(client)
    headers = await login(anonymous, username, password)
    for method, path in (("GET", "/api/v2/admin/stats"), ("POST", "/api/v2/admin/migrate")):
        assert (await anonymous.request(method, path)).status_code == 401
        assert (await anonymous.request(method, path, headers=headers)).status_code == 403


async def test_migrate_reports_nothing_pending_and_is_audited(
    client: AsyncTestClient[Litestar], admin_id: str
) -> None:
    response = await client.post("/api/v2/admin/migrate")
    assert response.status_code == 200, response.text
    report = response.json()["data"]
    assert report["from_revision"] == report["to_revision"] == "0005"
    assert report["applied"] == []

    audit = await client.get("/api/v2/audit", params={"limit": 100})
    assert audit.status_code == 200, audit.text
    entry = next(e for e in audit.json()["data"] if e["position"] == report["position"])
    assert entry["type"] == "EventStoreMigrated"
    assert entry["actor_id"] == admin_id


async def test_a_database_behind_has_its_pending_revisions_listed_then_applied(
    pool: asyncpg.Pool,
) -> None:
    """What `admin/migrate` reports, on a scratch database left at revision 0004."""
    name = f"aiplatform_test_{uuid.uuid4().hex[:12]}"
    await pool.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_DATABASE_URL.rpartition("/")[0] + f"/{name}"
    scratch = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "0004")
        before = await migration_status(scratch, url)
        assert (before.current, before.head) == ("0004", "0005")
        assert [r.revision for r in before.pending] == ["0005"]
        assert before.pending[0].description.startswith("Read-model versions")

        await asyncio.to_thread(upgrade_to_head, url)
        after = await migration_status(scratch, url)
        assert (after.current, after.pending) == ("0005", [])
    finally:
        await scratch.close()
        await pool.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_stats_show_a_version_being_built_beside_the_active_one(
    client: AsyncTestClient[Litestar], pool: asyncpg.Pool
) -> None:
    """A probe read model (no worker of the run projects it) with a copy being built."""
    projector = ProbeProjector(f"probe{uuid.uuid4().hex[:8]}")
    async with pool.acquire() as connection:
        await install(connection, projector.read_model)
        building = await install_generation(connection, projector.read_model)

    response = await client.get("/api/v2/admin/stats")
    assert response.status_code == 200, response.text
    status = next(
        rm for rm in response.json()["data"]["read_models"] if rm["read_model"] == building.name
    )
    assert status["active"]["version"] == projector.read_model.version
    assert (status["active"]["generation"], status["building"]["generation"]) == (0, 1)
    assert status["building"]["events_behind"] >= 1
    assert status["building"]["seconds_behind"] > 0
    assert 0.0 <= status["progress"] < 1.0
