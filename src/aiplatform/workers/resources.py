"""What an actor needs, created once per worker process on the worker's event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.config import Settings, load_settings
from aiplatform.eventstore.store import create_pool
from aiplatform.projectors.read_models import install
from aiplatform.projectors.registry import all_projectors
from aiplatform.projectors.runner import Projector


@dataclass
class WorkerResources:
    settings: Settings
    pool: asyncpg.Pool
    cache: Cache
    projectors: list[Projector]


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
            _resources = WorkerResources(settings, pool, cache, projectors)
        return _resources
