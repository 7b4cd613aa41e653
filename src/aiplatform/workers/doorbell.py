"""A doorbell for the latency-sensitive queues: an idle consumer blocks on a Redis list that
every enqueue rings, instead of polling with a backoff.

Dramatiq's Redis consumer sleeps between empty fetches, up to its worker timeout. That puts
half the timeout on every request that finds the consumer asleep (about 12 ms at a 25 ms
timeout), and a shorter timeout makes an idle worker spin. Here the sender pushes a token on
`<namespace>:<queue>.doorbell` right after the message, and an idle consumer waits on that list
with `BLPOP`, so it wakes within a Redis round trip and sleeps for the full timeout otherwise.

A token wakes one consumer, which then fetches what it may. A token taken by a consumer whose
fetch came up empty (another one was faster) is harmless; a consumer that cannot take more
messages (prefetch full) does not wait on the bell, so it never swallows a token meant for an
idle one. Tokens are bounded and expire, so a queue without workers does not grow a list.
"""

from __future__ import annotations

from typing import Any

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed

# Enough tokens to wake every consumer of a queue after a burst; older ones add nothing.
MAX_TOKENS = 64
TOKENS_TTL_MS = 60_000


def doorbell_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.doorbell"


class DoorbellRedisBroker(RedisBroker):
    def __init__(self, *, doorbell_queues: frozenset[str], **options: Any) -> None:
        super().__init__(**options)  # type: ignore[no-untyped-call]
        self.doorbell_queues = doorbell_queues

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _DoorbellConsumer

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        enqueued = super().enqueue(message, delay=delay)
        # A delayed message goes to the delay queue; the worker holding it enqueues it again
        # when it is due, and that enqueue rings.
        if delay is None and enqueued.queue_name in self.doorbell_queues:
            self.ring(enqueued.queue_name)
        return enqueued

    def ring(self, queue_name: str) -> None:
        key = doorbell_key(self.namespace, queue_name)
        pipeline = self.client.pipeline(transaction=False)
        pipeline.rpush(key, b"1")
        pipeline.ltrim(key, -MAX_TOKENS, -1)
        pipeline.pexpire(key, TOKENS_TTL_MS)
        pipeline.execute()


class _DoorbellConsumer(_RedisConsumer):
    """Waits on the doorbell where the stock consumer would sleep; other queues of the same
    broker (delay queues, slow queues) keep the stock behaviour."""

    broker: DoorbellRedisBroker

    def __next__(self) -> Any:
        if (
            self.queue_name in self.broker.doorbell_queues
            and not self.message_cache
            and self.outstanding_message_count < self.prefetch
        ):
            try:
                self.message_cache = self.broker.do_fetch(
                    self.queue_name, self.prefetch - self.outstanding_message_count
                )
                if not self.message_cache:
                    self.broker.client.blpop(
                        [doorbell_key(self.broker.namespace, self.queue_name)],
                        timeout=self.timeout / 1000,
                    )
                    return None
            except redis.ConnectionError as error:
                raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]
        return super().__next__()  # type: ignore[no-untyped-call]
