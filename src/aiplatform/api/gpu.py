"""/api/v2/gpu: the GPUs of every host running workers, and the worker processes themselves."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Router, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ServiceUnavailableException
from litestar.params import QueryParameter
from redis.exceptions import RedisError

from aiplatform.api.envelope import Envelope, ok
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUTHENTICATED
from aiplatform.monitoring.records import HISTORY_S, MonitoringKeys
from aiplatform.monitoring.status import GpuStatus, read_history, read_status

_MAX_MINUTES = HISTORY_S // 60


@get(
    "/status",
    operation_id="GetGpuStatus",
    summary="Every host's GPUs (latest sample, optionally the last hour) and the live workers",
    description="`available` is false when no host's GPUs can be read, and `reason` says why "
    "(per host in `hosts`); worker processes' CPU and memory show either way. GPU units: "
    "`utilization` %, `memory_used`/`memory_total` bytes, `temperature` °C, `power_watts` W; "
    "None where a device does not report the value. Samples are taken every 5 s. With "
    "`history=true` (or `minutes`), `history` holds each device's samples of the last "
    "`minutes` (default and most 60) as chart columns; `host` and `index` pick one device.",
    opt={"permission": AUTHENTICATED},
)
async def get_gpu_status(
    services: NamedDependency[Services],
    history: Annotated[
        bool, QueryParameter(description="include each device's recent samples")
    ] = False,
    minutes: Annotated[
        int | None,
        QueryParameter(ge=1, le=_MAX_MINUTES, description="history of the last 1-60 minutes"),
    ] = None,
    host: Annotated[
        str | None, QueryParameter(min_length=1, max_length=255, description="history of one host")
    ] = None,
    index: Annotated[
        int | None, QueryParameter(ge=0, description="history of one device index")
    ] = None,
) -> Envelope[GpuStatus]:
    client = services.cache.client
    if client is None:
        raise ServiceUnavailableException("GPU metrics are kept in Redis, which is not configured")
    keys = MonitoringKeys(services.cache.prefix)
    now = time.time()
    try:
        status = await read_status(client, keys, now)
        if history or minutes is not None:
            since = now - 60 * (minutes or _MAX_MINUTES)
            devices = await read_history(client, keys, status.hosts, since, host=host, index=index)
            status = msgspec.structs.replace(status, history=devices)
    except (RedisError, OSError):
        raise ServiceUnavailableException(
            "GPU metrics are kept in Redis, which is unavailable; retry shortly"
        ) from None
    return ok(status)


def gpu_router() -> Router:
    return Router(
        path="/gpu",
        route_handlers=[get_gpu_status],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        tags=["monitoring"],
    )
