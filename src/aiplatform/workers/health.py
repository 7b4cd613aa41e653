"""`aiplatform worker-health`: whether this host runs a live worker process, for a container's
health check or a liveness probe. A worker process beats into Redis every few seconds
(`workers.monitoring`); a host whose workers stopped beating (hung, or lost Redis) is unhealthy.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from aiplatform.cache import key_prefix
from aiplatform.config import Settings
from aiplatform.platform_stats import workers_alive


async def unhealthy_reason(settings: Settings, host: str, queues: set[str]) -> str | None:
    """None when a worker process of `host` beat recently and, together, this host's live
    processes consume every queue of `queues`; otherwise what is wrong."""
    client = aioredis.Redis.from_url(settings.require_redis_url(), socket_timeout=3)
    try:
        beats = await workers_alive(client, key_prefix(settings.instance))
    except (RedisError, OSError) as error:
        return f"cannot read the workers' heartbeats from Redis: {error}"
    finally:
        await client.aclose()
    mine = [beat for beat in beats if beat.host == host]
    if not mine:
        return f"no worker process on {host} has beaten recently"
    missing = queues - {queue for beat in mine for queue in beat.queues}
    if missing:
        return f"no live worker process on {host} consumes {', '.join(sorted(missing))}"
    return None


def run_worker_health(settings: Settings, queues: str) -> int:
    wanted = {queue.strip() for queue in queues.split(",") if queue.strip()}
    reason = asyncio.run(unhealthy_reason(settings, socket.gethostname(), wanted))
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    print("healthy")
    return 0
