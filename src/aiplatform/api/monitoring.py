"""/api/v2/metrics: what a running or finished job's charts draw."""

from __future__ import annotations

import uuid
from typing import Annotated, Final

import msgspec
from litestar import Router, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from aiplatform.api.envelope import Envelope, ok
from aiplatform.api.guards import Principal, provide_principal
from aiplatform.api.jobs import require_job_permission
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUTHENTICATED, PROJECT_READ

LOSS: Final = "loss"
# Drawn along the training loss when the trainer records it.
VALIDATION_LOSS: Final = "val_loss"


class Series(msgspec.Struct, frozen=True, kw_only=True):
    steps: list[int]
    values: list[float]
    total_points: int


class LossCurve(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    series: dict[str, Series]
    total_points: int
    returned_points: int


@get(
    "/loss",
    operation_id="GetLossCurve",
    summary="A training job's loss curve (and validation loss), downsampled for drawing",
    description="Each series keeps at most `points` points, chosen by "
    "Largest-Triangle-Three-Buckets: the first and last points, peaks and dips survive. "
    "`val_loss` is present when the job records it. Needs project:read in the job's project.",
    # The job is named in the query string, where the guard does not look: checked below.
    opt={"permission": AUTHENTICATED},
)
async def get_loss_curve(
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    job_id: Annotated[uuid.UUID, QueryParameter(description="the training job")],
    points: Annotated[
        int, QueryParameter(ge=2, le=5000, description="the most points per series, 2-5000")
    ] = 500,
) -> Envelope[LossCurve]:
    await require_job_permission(services, principal, job_id, PROJECT_READ)
    series: dict[str, Series] = {}
    for name in (LOSS, VALIDATION_LOSS):
        curve = await services.jobs.curve(job_id, name, points)
        if name == LOSS or curve.total_points:
            series[name] = Series(
                steps=curve.steps, values=curve.values, total_points=curve.total_points
            )
    return ok(
        LossCurve(
            job_id=job_id,
            series=series,
            total_points=sum(s.total_points for s in series.values()),
            returned_points=sum(len(s.steps) for s in series.values()),
        )
    )


def monitoring_router() -> Router:
    return Router(
        path="/metrics",
        route_handlers=[get_loss_curve],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["monitoring"],
    )
