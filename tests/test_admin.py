"""Platform figures (`platform_stats`) and the admin routes that show them."""

from __future__ import annotations

import time
import uuid

import asyncpg
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from aiplatform.cache import Cache, key_prefix
from aiplatform.config import Settings
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.store import EventStore
from aiplatform.monitoring.records import BEAT_TTL_S
from aiplatform.platform_stats import (
    dramatiq_namespace,
    projection_lags,
    queue_depths,
    workers_alive,
)
from aiplatform.projectors.read_models import install
from aiplatform.projectors.runner import catch_up
from aiplatform.workers.monitoring import Monitor
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

    await catch_up(pool, projector, Cache(None))
    lag = next(
        item for item in await projection_lags(pool) if item.read_model == projector.read_model.name
    )
    assert lag.events_applied >= 3


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
