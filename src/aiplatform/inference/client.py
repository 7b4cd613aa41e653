"""The API's side of an inference request: send it, then wait for its replies on Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from dramatiq.brokers.redis import RedisBroker
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from aiplatform.inference.replies import (
    Done,
    Failed,
    InferenceRequest,
    Reply,
    decode_reply,
    inference_message,
)

# Between two pieces of a streamed generation: a worker that stops answering mid-way.
PIECE_TIMEOUT_S = 30.0


class InferenceUnavailableError(Exception):
    """No inference worker answered in time (503)."""


def new_request_id() -> str:
    return uuid.uuid4().hex


async def replies(
    broker: RedisBroker,
    client: aioredis.Redis,
    reply_list: str,
    request: InferenceRequest,
    timeout_s: float,
) -> AsyncIterator[Reply]:
    """Sends the request and yields its replies up to the last (Done or Failed). Raises
    InferenceUnavailableError when no worker answers within `timeout_s`."""
    message = inference_message(request, max_age_ms=int(timeout_s * 1000))
    try:
        await asyncio.to_thread(broker.enqueue, message)
    except (RedisError, OSError) as error:
        raise InferenceUnavailableError(f"the inference queue is unreachable: {error}") from None
    wait_s = timeout_s
    while True:
        try:
            item = await client.blpop([reply_list], timeout=wait_s)
        except (RedisError, OSError) as error:
            raise InferenceUnavailableError(f"lost the inference replies: {error}") from None
        if item is None:
            raise InferenceUnavailableError(
                f"no inference worker answered within {wait_s:g} s; "
                "the workers of the `inference` queue may be down or busy"
            )
        reply = decode_reply(item[1])
        yield reply
        if isinstance(reply, Done | Failed):
            return
        wait_s = PIECE_TIMEOUT_S
