"""The Redis cache of projections: TTLs, no stale value after a change, warm-up at start, and
reads that keep working from PostgreSQL when Redis is down."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.api.app import create_app
from aiplatform.cache import Cache, VersionedEntry, connect, key_prefix
from aiplatform.config import Settings
from aiplatform.projectors.projects import project_key
from aiplatform.projectors.read_models import load_read_model
from aiplatform.queries.projects import ProjectFilters, ProjectQueries
from conftest import ADMIN_PASSWORD, login

Client = AsyncTestClient[Litestar]
DEAD_REDIS = "redis://127.0.0.1:1/0"


async def create(client: Client, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v2/projects", json={"name": f"c {uuid.uuid4().hex[:6]}", **fields}
    )
    assert response.status_code == 201
    return response.json()


def raw_key(settings: Settings, project_id: str) -> str:
    cache = Cache(None, key_prefix(settings.instance))
    return project_key(cache, load_read_model("projects"), project_id)


async def test_a_read_fills_the_cache_with_the_project_ttl(
    client: Client, settings: Settings
) -> None:
    created = await create(client)
    project_id = created["data"]["id"]
    await client.get(
        f"/api/v2/projects/{project_id}", params={"after": created["meta"]["position"]}
    )
    redis = aioredis.Redis.from_url(settings.require_redis_url())
    key = raw_key(settings, project_id)
    try:
        # Under heavy load a Redis timeout makes the API skip the cache for a few seconds (by
        # design); a read after that fills it.
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            await client.get(f"/api/v2/projects/{project_id}")
            await client.get("/api/v2/projects")
            if await redis.exists(key):
                break
            await asyncio.sleep(0.5)
        assert 0 < await redis.ttl(key) <= 300
        stored = await redis.get(key)
        assert stored is not None
        assert stored.startswith(b"1|")
        list_keys = [k async for k in redis.scan_iter(match=f"*{settings.instance}*:list:*")]
        assert list_keys
        for list_key in list_keys:
            assert 0 < await redis.ttl(list_key) <= 300
    finally:
        await redis.aclose()


async def test_after_an_update_no_reader_sees_the_old_value(client: Client) -> None:
    created = await create(client, description="before")
    url = f"/api/v2/projects/{created['data']['id']}"
    await client.get(url, params={"after": created["meta"]["position"]})
    assert (await client.get(url)).json()["data"]["description"] == "before"  # cached now
    updated = (await client.put(url, json={"description": "after"})).json()
    fresh = await client.get(url, params={"after": updated["meta"]["position"]})
    assert fresh.json()["data"]["description"] == "after"
    for _ in range(20):  # the cache, once refreshed, never goes back
        response = await client.get(url)
        if response.json()["data"]["description"] == "after":
            break
    assert (await client.get(url)).json()["data"]["description"] == "after"


async def test_a_slow_reader_cannot_put_an_older_version_back(settings: Settings) -> None:
    cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))
    key = cache.key("test", uuid.uuid4().hex)
    try:
        await cache.set_versioned([VersionedEntry(key, 1, b"v1")], 60)
        assert await cache.get_versioned(key) == b"v1"
        await cache.set_versioned([VersionedEntry(key, 2)], 60)  # the projector's tombstone
        assert await cache.get_versioned(key) is None
        await cache.set_versioned([VersionedEntry(key, 1, b"v1")], 60)  # a late, stale reader
        assert await cache.get_versioned(key) is None
        await cache.set_versioned([VersionedEntry(key, 2, b"v2")], 60)
        assert await cache.get_versioned(key) == b"v2"
    finally:
        await cache.close()


async def test_start_up_warms_the_cache_with_active_projects(
    client: Client, settings: Settings
) -> None:
    active = await create(client)
    archived = await create(client)
    last = await client.post(f"/api/v2/projects/{archived['data']['id']}/archive")
    await client.get("/api/v2/projects", params={"after": last.json()["meta"]["position"]})
    redis = aioredis.Redis.from_url(settings.require_redis_url())
    try:
        await redis.delete(
            raw_key(settings, active["data"]["id"]), raw_key(settings, archived["data"]["id"])
        )
        async with AsyncTestClient(app=create_app(settings)):
            assert await redis.exists(raw_key(settings, active["data"]["id"])) == 1
            # The archived project holds only the projector's tombstone, if anything.
            value = await redis.get(raw_key(settings, archived["data"]["id"]))
            assert value is None or value.endswith(b"|")
    finally:
        await redis.aclose()


async def test_reads_fall_back_to_postgresql_when_redis_is_down(
    client: Client, pool: asyncpg.Pool
) -> None:
    created = await create(client, tags=["fallback"])
    await client.get("/api/v2/projects", params={"after": created["meta"]["position"]})
    queries = ProjectQueries(pool, Cache(connect(DEAD_REDIS)))
    project = await queries.get(uuid.UUID(created["data"]["id"]))
    assert project is not None
    assert project.tags == ["fallback"]
    page = await queries.list(ProjectFilters(tag="fallback"))
    assert page.total >= 1


async def test_the_api_serves_reads_without_redis_and_says_it_is_not_ready(
    client: Client, settings: Settings
) -> None:
    created = await create(client)
    await client.get("/api/v2/projects", params={"after": created["meta"]["position"]})
    without_redis = dataclasses.replace(settings, redis_url=DEAD_REDIS)
    async with AsyncTestClient(app=create_app(without_redis)) as degraded:
        degraded.headers.update(await login(degraded, "root", ADMIN_PASSWORD))
        response = await degraded.get(f"/api/v2/projects/{created['data']['id']}")
        assert response.status_code == 200
        assert response.json()["data"]["id"] == created["data"]["id"]
        assert (await degraded.get("/api/v2/projects")).status_code == 200
        ready = await degraded.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["data"]["redis"] is False
        assert ready.json()["data"]["database"] is True
