"""What an actor needs, created once per worker process on the worker's event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import dramatiq

from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.config import Settings, load_settings
from aiplatform.eventstore.store import EventStore, create_pool
from aiplatform.projectors.read_models import install
from aiplatform.projectors.registry import all_projectors
from aiplatform.projectors.runner import Projector
from aiplatform.storage import BlobStore, blob_store_from_settings
from aiplatform.workers.broker import projector_wake_up


@dataclass
class WorkerResources:
    settings: Settings
    pool: asyncpg.Pool
    cache: Cache
    projectors: list[Projector]
    store: EventStore
    blobs: BlobStore

    async def wake_projector(self) -> None:
        """Worker-side appends wake the projector like the API's do (without the API's gate:
        workers append rarely)."""
        broker = dramatiq.get_broker()
        await asyncio.to_thread(broker.enqueue, projector_wake_up())


_resources: WorkerResources | None = None
_lock = asyncio.Lock()


async def worker_resources() -> WorkerResources:
    global _resources
    async with _lock:
        if _resources is None:
            settings = load_settings()
            pool = await create_pool(
                settings.require_database_url(),
                max_size=4,
                idle_in_transaction_timeout_ms=settings.idle_in_transaction_timeout_ms,
                application_name="aiplatform-worker",
            )
            projectors = all_projectors()
            async with pool.acquire() as connection:
                for projector in projectors:
                    await install(connection, projector.read_model)
            cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))
            _resources = WorkerResources(
                settings,
                pool,
                cache,
                projectors,
                EventStore(pool),
                blob_store_from_settings(settings),
            )
        return _resources
