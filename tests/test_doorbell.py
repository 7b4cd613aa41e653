"""The doorbell wakes an idle consumer of a latency queue at once, while its idle timeout stays
long; a consumer that cannot take more work leaves the token to one that can."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from dramatiq import Message

from aiplatform.config import Settings
from aiplatform.workers.doorbell import DoorbellRedisBroker, doorbell_key
from scratch_broker import scratch_broker

QUEUE = "bell"
IDLE_TIMEOUT_MS = 5_000


@pytest.fixture
def broker(settings: Settings) -> Iterator[DoorbellRedisBroker]:
    with scratch_broker(settings, "doorbell", QUEUE) as broker:
        broker.declare_queue(QUEUE)
        yield broker


def message(n: int) -> Message[None]:
    return Message(queue_name=QUEUE, actor_name="noop", args=(n,), kwargs={}, options={})


def test_an_idle_consumer_wakes_on_enqueue_not_after_its_timeout(
    broker: DoorbellRedisBroker,
) -> None:
    consumer = broker.consume(QUEUE, prefetch=1, timeout=IDLE_TIMEOUT_MS)
    received: list[tuple[int, float]] = []

    def consume() -> None:
        while not received:
            proxy = next(consumer)
            if proxy is not None:
                received.append((proxy.args[0], time.monotonic()))
                consumer.ack(proxy)

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(2.0)  # the consumer is now blocked on the bell (a polling one, backed off)
    sent_at = time.monotonic()
    broker.enqueue(message(7))
    thread.join(timeout=IDLE_TIMEOUT_MS / 1000 * 2)
    assert received, "the consumer never received the message"
    number, received_at = received[0]
    assert number == 7
    # Far below the idle timeout: the bell woke it (a loaded machine still answers in 1 s).
    assert received_at - sent_at < 1.0
    consumer.close()


def test_a_consumer_with_full_prefetch_leaves_the_token(broker: DoorbellRedisBroker) -> None:
    busy = broker.consume(QUEUE, prefetch=1, timeout=IDLE_TIMEOUT_MS)
    broker.enqueue(message(1))
    first = next(busy)
    assert first is not None
    assert first.args == (1,)
    # `busy` holds one unacknowledged message: full. It must not wait on (and eat) the bell.
    broker.enqueue(message(2))
    started = time.monotonic()
    assert next(busy) is None
    assert broker.client.llen(doorbell_key(broker.namespace, QUEUE)) >= 1
    idle = broker.consume(QUEUE, prefetch=1, timeout=IDLE_TIMEOUT_MS)
    second = next(idle)
    assert second is not None
    assert second.args == (2,)
    assert time.monotonic() - started < IDLE_TIMEOUT_MS / 1000
    busy.ack(first)
    idle.ack(second)
    busy.close()
    idle.close()


def test_delayed_messages_do_not_ring(broker: DoorbellRedisBroker) -> None:
    broker.enqueue(message(3), delay=60_000)
    assert broker.client.llen(doorbell_key(broker.namespace, QUEUE)) == 0


def test_tokens_are_bounded_and_expire(broker: DoorbellRedisBroker) -> None:
    for n in range(100):
        broker.enqueue(message(n))
    key = doorbell_key(broker.namespace, QUEUE)
    assert broker.client.llen(key) == 64
    assert 0 < broker.client.pttl(key) <= 60_000
