"""The objects a request handler works with, built once per API process by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from dramatiq.brokers.redis import RedisBroker
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from redis import asyncio as aioredis

from aiplatform.api.errors import RequestError
from aiplatform.auth.accounts import Accounts
from aiplatform.auth.rate_limit import LoginRateLimiter
from aiplatform.auth.standing import Standing
from aiplatform.auth.tokens import VerifiedTokens
from aiplatform.cache import Cache
from aiplatform.commands import CommandHandler
from aiplatform.config import Settings
from aiplatform.eventstore.store import EventStore
from aiplatform.projectors.progress import wait_until_projected
from aiplatform.projectors.read_models import ReadModel
from aiplatform.queries.datasets import DatasetQueries
from aiplatform.queries.experiments import ExperimentQueries
from aiplatform.queries.jobs import JobQueries
from aiplatform.queries.models import ModelQueries
from aiplatform.queries.notifications import NotificationQueries
from aiplatform.queries.projects import ProjectQueries
from aiplatform.queries.roles import RoleQueries
from aiplatform.queries.users import UserQueries
from aiplatform.storage import BlobStore
from aiplatform.streams.feed import StreamFeed
from aiplatform.workers.waker import ProjectorWaker


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    cache: Cache
    store: EventStore
    commands: CommandHandler
    projects: ProjectQueries
    users: UserQueries
    experiments: ExperimentQueries
    models: ModelQueries
    datasets: DatasetQueries
    jobs: JobQueries
    notifications: NotificationQueries
    blobs: BlobStore
    roles: RoleQueries
    accounts: Accounts
    standing: Standing
    login_limiter: LoginRateLimiter
    tokens: VerifiedTokens
    broker: RedisBroker
    waker: ProjectorWaker
    # For commands that block on purpose (BLPOP of inference replies, pub/sub).
    waiting_redis: aioredis.Redis
    # Live streams: this process's one subscription, fanned out to its clients.
    streams: StreamFeed

    async def read_after(
        self,
        request: ASGIConnection[Any, Any, Any, Any],
        read_model: ReadModel,
        after: int | None,
    ) -> bool | None:
        """Read-your-writes: with `?after=<position>` (or `X-After-Position`) from a write's
        response, waits until the read model has that write. Returns None when the read asked
        for no position, False when the wait timed out (the read then serves what is there and
        says so), True when the write is in the read model."""
        if after is None:
            header = request.headers.get("x-after-position")
            if header is None:
                return None
            if not header.isdigit():
                raise RequestError(
                    "X-After-Position must be an event position", field="X-After-Position"
                )
            after = int(header)
        return await wait_until_projected(
            self.pool, read_model, after, self.settings.read_your_writes_timeout_s
        )


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services
