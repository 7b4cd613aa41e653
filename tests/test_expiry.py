"""Expired wake-ups and requests are dropped by a real worker: acknowledged, never run, and
never left in the dead-letter queue."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq import Message, Worker
from dramatiq.common import current_millis

from aiplatform.config import Settings
from aiplatform.workers.doorbell import DoorbellRedisBroker
from aiplatform.workers.expiry import DropExpired, expiring
from scratch_broker import scratch_broker

QUEUE = "expiry-test"


@pytest.fixture
def broker(settings: Settings) -> Iterator[DoorbellRedisBroker]:
    with scratch_broker(settings, "expiry", QUEUE) as broker:
        broker.add_middleware(DropExpired())
        yield broker


def dead_letters(broker: DoorbellRedisBroker) -> int:
    client: redis.Redis = broker.client
    return sum(int(client.zcard(key)) for key in client.scan_iter(match=f"{broker.namespace}*.XQ"))


def test_an_expired_message_is_acknowledged_without_running_or_dead_lettering(
    broker: DoorbellRedisBroker,
) -> None:
    ran: list[str] = []

    def record(label: str) -> None:
        ran.append(label)

    dramatiq.actor(record, broker=broker, queue_name=QUEUE, actor_name="record", max_retries=0)

    def message(label: str, age_ms: int) -> Message[None]:
        return Message(
            queue_name=QUEUE,
            actor_name="record",
            args=(label,),
            kwargs={},
            options=expiring(1_000),
            message_timestamp=current_millis() - age_ms,
        )

    broker.enqueue(message("stale", age_ms=60_000))
    broker.enqueue(message("fresh", age_ms=0))
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while "fresh" not in ran and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.join(QUEUE, timeout=30_000)
    finally:
        worker.stop()
    assert ran == ["fresh"]
    assert dead_letters(broker) == 0


def test_dramatiqs_own_max_age_would_have_dead_lettered_it(broker: DoorbellRedisBroker) -> None:
    """Why `expires_after_ms` exists: the stock option parks expired messages for a week."""

    def noop() -> None:
        pass

    dramatiq.actor(noop, broker=broker, queue_name=QUEUE, actor_name="noop", max_retries=0)
    broker.enqueue(
        Message(
            queue_name=QUEUE,
            actor_name="noop",
            args=(),
            kwargs={},
            options={"max_age": 1_000},
            message_timestamp=current_millis() - 60_000,
        )
    )
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while dead_letters(broker) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert dead_letters(broker) == 1
