"""The Redis side of reads: cached projections and change messages.

Redis is an accelerator, never a dependency of correctness: every call here degrades to "miss"
or "not sent" when Redis is unreachable, and after a failure Redis is left alone for a few
seconds, so that a dead Redis costs one timeout, not one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aiplatform.config import REDIS_KEY_PREFIX

log = logging.getLogger(__name__)
T = TypeVar("T")

# DESIGN.md's TTLs, in seconds.
TTL_PROJECT_LIST = 5 * 60
TTL_PROJECT = 5 * 60
TTL_SESSION = 24 * 3600
TTL_ASSET_INFO = 3600  # dataset and model info

_BACKOFF_AFTER_FAILURE_S = 5.0

# Values are stored as `<version>|<payload>`; an empty payload is a tombstone.
_SET_IF_NOT_OLDER = """
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '^(%d+)|'))
  if version and version > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class VersionedEntry:
    key: str
    version: int
    payload: bytes = b""


def key_prefix(instance: str = "") -> str:
    """`aiplatform:v2:`, plus the instance name when several platforms share one Redis."""
    return f"{REDIS_KEY_PREFIX}{instance}:" if instance else REDIS_KEY_PREFIX


def connect(redis_url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
    )


def connect_for_waiting(redis_url: str) -> aioredis.Redis:
    """A client for blocking commands (BLPOP, pub/sub): they wait longer than the cache's
    half-second socket timeout allows, by design."""
    return aioredis.Redis.from_url(
        redis_url, socket_timeout=None, socket_connect_timeout=0.5, health_check_interval=30
    )


def versioned_payload(raw: bytes) -> bytes | None:
    """The payload of a stored `set_versioned` value; None for a tombstone."""
    _, _, payload = raw.partition(b"|")
    return payload or None


class Cache:
    def __init__(self, client: aioredis.Redis | None, prefix: str = REDIS_KEY_PREFIX):
        self.client = client
        self.prefix = prefix
        self._unavailable_until = 0.0

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def channel(self, name: str) -> str:
        """The pub/sub channel of a stream channel name such as `project:<id>`."""
        return self.key("channel", name)

    @property
    def available(self) -> bool:
        return self.client is not None and time.monotonic() >= self._unavailable_until

    async def _call(self, operation: Callable[[aioredis.Redis], Awaitable[T]], default: T) -> T:
        if self.client is None or not self.available:
            return default
        try:
            return await operation(self.client)
        except (RedisError, OSError) as error:
            self._unavailable_until = time.monotonic() + _BACKOFF_AFTER_FAILURE_S
            log.warning("redis unavailable, reading from PostgreSQL: %s", error)
            return default

    async def get(self, cache_key: str) -> bytes | None:
        # The client does not decode responses, so values are bytes.
        value = await self._call(lambda r: r.get(cache_key), None)
        return cast(bytes | None, value)

    async def get_many(self, cache_keys: list[str]) -> list[bytes | None]:
        missing: list[bytes | None] = [None] * len(cache_keys)
        values = await self._call(lambda r: r.mget(cache_keys), cast(list[Any], missing))
        return cast(list[bytes | None], values)

    async def set(
        self, cache_key: str, value: bytes, ttl_s: int, *, only_if_absent: bool = False
    ) -> None:
        """`only_if_absent` is for readers filling the cache from the database: a writer that
        stored a newer value meanwhile wins."""
        await self._call(lambda r: r.set(cache_key, value, ex=ttl_s, nx=only_if_absent), None)

    async def get_versioned(self, cache_key: str) -> bytes | None:
        """The payload of a `set_versioned` entry; None on a miss or a tombstone."""
        raw = await self.get(cache_key)
        return versioned_payload(raw) if raw is not None else None

    async def set_versioned(self, entries: list[VersionedEntry], ttl_s: int) -> None:
        """Stores each entry unless Redis holds a newer version of it. A reader that read the
        table before a change and writes after the projector has marked the change (with a
        tombstone of the new version) can then never put the old value back."""

        async def write(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=False) as pipe:
                for entry in entries:
                    pipe.eval(_SET_IF_NOT_OLDER, 1, entry.key, entry.version, entry.payload, ttl_s)
                await pipe.execute()

        if entries:
            await self._call(write, None)

    async def mark_stale(self, versions: dict[str, int], ttl_s: int) -> None:
        """Tombstones each key at its new version (key -> version): readers miss and reload,
        and none can store an older value afterwards."""
        await self.set_versioned([VersionedEntry(k, v) for k, v in versions.items()], ttl_s)

    async def set_if_absent(self, cache_key: str, ttl_ms: int) -> bool:
        """A gate: True for the first caller until the key expires or is deleted. When Redis
        is unavailable every caller passes, so work is repeated rather than lost."""
        return bool(await self._call(lambda r: r.set(cache_key, 1, nx=True, px=ttl_ms), True))

    async def delete(self, *cache_keys: str) -> None:
        if cache_keys:
            await self._call(lambda r: r.delete(*cache_keys), None)

    async def count(self, cache_key: str, window_s: int) -> None:
        """Adds one to a counter that disappears `window_s` after its first count."""

        async def increment(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.incr(cache_key)
                pipe.expire(cache_key, window_s, nx=True)
                await pipe.execute()

        await self._call(increment, None)

    async def counters(self, cache_keys: list[str]) -> list[tuple[int, int]]:
        """Each counter's value and seconds to live; (0, 0) for missing ones, and for all when
        Redis is unavailable (limits fail open rather than lock everyone out)."""

        async def read(r: aioredis.Redis) -> list[tuple[int, int]]:
            async with r.pipeline(transaction=False) as pipe:
                for cache_key in cache_keys:
                    pipe.get(cache_key)
                    pipe.ttl(cache_key)
                values = await pipe.execute()
            return [
                (int(values[i] or 0), max(0, int(values[i + 1]))) for i in range(0, len(values), 2)
            ]

        return await self._call(read, [(0, 0)] * len(cache_keys))

    async def generation(self, cache_key: str) -> int | None:
        """A counter that invalidates a family of keys (list pages) when bumped."""
        raw = await self.get(cache_key)
        return int(raw) if raw is not None else 0 if self.available else None

    async def bump(self, cache_key: str) -> None:
        await self._call(lambda r: r.incr(cache_key), None)

    async def publish(self, channel_name: str, message: bytes) -> None:
        await self._call(lambda r: r.publish(self.channel(channel_name), message), None)

    async def ping(self) -> bool:
        """Asks Redis even while reads avoid it: readiness must see a recovery at once."""
        if self.client is None:
            return False
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
