"""`GET /metrics`: the Prometheus text exposition of this API process's request metrics and
of the platform's figures (see `observability.metrics`). Public like `/health`: keep it on
the cluster's network (the Service is internal), not behind the public ingress."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler

from aiplatform.auth.permissions import PUBLIC
from aiplatform.observability.figures import read_figures
from aiplatform.observability.metrics import ApiMetrics, PlatformFigures

# The text format every Prometheus version reads (Litestar adds the charset).
EXPOSITION_MEDIA_TYPE = "text/plain; version=0.0.4"


def metrics_route(metrics: ApiMetrics) -> HTTPRouteHandler:
    @get(
        "/metrics",
        operation_id="Metrics",
        tags=["health"],
        summary="Prometheus metrics: requests, event log, projection lag, queues, jobs, GPUs",
        opt={"permission": PUBLIC},
        security=[],
        include_in_schema=True,
    )
    async def exposition(state: State) -> Response[bytes]:
        services = state.services

        async def read() -> PlatformFigures:
            return await read_figures(
                services.pool,
                services.cache.client,
                services.cache.prefix,
                services.settings.instance,
                services.jobs.table,
            )

        await metrics.refresh(read)
        return Response(metrics.exposition(), media_type=EXPOSITION_MEDIA_TYPE)

    return exposition
