"""`/health` (the process answers) and `/ready` (its dependencies answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from aiplatform.api.envelope import Envelope, failure, ok
from aiplatform.auth.permissions import PUBLIC

_CHECK_TIMEOUT_S = 2.0


@get(
    "/health",
    operation_id="Health",
    tags=["health"],
    summary="The process is alive",
    opt={"permission": PUBLIC},
    security=[],
)
async def health() -> Envelope[dict[str, str]]:
    return ok({"status": "ok"})


async def _database_ready(state: State) -> bool:
    async with state.services.pool.acquire(timeout=_CHECK_TIMEOUT_S) as connection:
        return bool(await connection.fetchval("SELECT 1", timeout=_CHECK_TIMEOUT_S) == 1)


async def _broker_ready(state: State) -> bool:
    broker = state.services.broker
    return bool(await asyncio.to_thread(broker.client.ping))


async def _check(probe: Any, state: State) -> bool:
    try:
        return bool(await asyncio.wait_for(probe(state), _CHECK_TIMEOUT_S))
    except Exception:
        return False


@get(
    "/ready",
    operation_id="Ready",
    tags=["health"],
    summary="Database, Redis and broker answer",
    opt={"permission": PUBLIC},
    security=[],
)
async def ready(state: State) -> Response[Envelope[dict[str, bool]]]:
    async def redis_ready(s: State) -> bool:
        return bool(await s.services.cache.ping())

    database, redis, broker = await asyncio.gather(
        _check(_database_ready, state), _check(redis_ready, state), _check(_broker_ready, state)
    )
    checks = {"database": database, "redis": redis, "broker": broker}
    if all(checks.values()):
        return Response(ok(checks))
    down = ", ".join(name for name, up in checks.items() if not up)
    return Response(
        Envelope(
            success=False,
            data=checks,
            error=f"not ready: {down} unreachable",
            meta=failure("", "unavailable").meta,
        ),
        status_code=503,
    )
