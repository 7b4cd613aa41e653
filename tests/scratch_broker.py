"""A Dramatiq broker on the run's Redis under a namespace of its own, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from aiplatform.config import Settings
from aiplatform.workers.doorbell import DoorbellRedisBroker


@contextmanager
def scratch_broker(settings: Settings, label: str, queue: str) -> Iterator[DoorbellRedisBroker]:
    """A broker whose `queue` rings the doorbell."""
    namespace = f"{settings.instance}-{label}-{uuid.uuid4().hex[:8]}"
    broker = DoorbellRedisBroker(
        doorbell_queues=frozenset({queue}), url=settings.require_redis_url(), namespace=namespace
    )
    try:
        yield broker
    finally:
        client: redis.Redis = broker.client
        keys = list(client.scan_iter(match=f"{namespace}*"))
        if keys:
            client.delete(*keys)
        broker.close()
