"""/api/v2/experiments: experiments inside projects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from aiplatform.aggregates import EXPERIMENTS
from aiplatform.api.context import command_context, if_match_version
from aiplatform.api.envelope import Envelope, ok, paginated
from aiplatform.api.guards import ensure_active
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import EXPERIMENT_WRITE, PROJECT_READ
from aiplatform.commands import CommandResult
from aiplatform.domain import experiments as domain
from aiplatform.domain.experiments import Experiment
from aiplatform.queries.experiments import ExperimentView

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"\S")]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
TaskType = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Settable = Literal["draft", "completed", "failed", "cancelled", "archived"]


class ExperimentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    project_id: uuid.UUID
    name: Name
    description: Description = ""
    base_model: ModelName | None = None
    task_type: TaskType | None = None
    config: dict[str, Any] = {}


class ExperimentUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    base_model: ModelName | msgspec.UnsetType | None = msgspec.UNSET
    task_type: TaskType | msgspec.UnsetType | None = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    status: Settable | msgspec.UnsetType = msgspec.UNSET


def _out(
    experiment: Experiment, created_by: str, created_at: datetime, updated_at: datetime
) -> ExperimentView:
    return ExperimentView(
        id=uuid.UUID(experiment.experiment_id),
        project_id=uuid.UUID(experiment.project_id),
        name=experiment.name,
        description=experiment.description,
        base_model=experiment.base_model,
        task_type=experiment.task_type,
        config=experiment.config,
        status=experiment.status,
        metrics=experiment.metrics,
        created_by=created_by,
        version=experiment.version,
        created_at=created_at,
        updated_at=updated_at,
    )


async def _written(services: Services, result: CommandResult[Experiment]) -> ExperimentView:
    experiment = result.state
    assert experiment is not None
    assert result.created_at is not None
    assert result.updated_at is not None
    creation = await services.store.read_stream(
        domain.stream_id(experiment.experiment_id), up_to_version=1
    )
    return _out(experiment, creation[0].metadata.actor, result.created_at, result.updated_at)


@get(
    "/",
    operation_id="ListExperiments",
    summary="List a project's experiments",
    opt={"permission": PROJECT_READ},
)
async def list_experiments(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: Annotated[uuid.UUID, QueryParameter(description="the project")],
    status: Annotated[str | None, QueryParameter(max_length=20)] = None,
    page: Annotated[int, QueryParameter(ge=1)] = 1,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    after: Annotated[int | None, QueryParameter(ge=0)] = None,
) -> Envelope[list[ExperimentView]]:
    await services.read_after(request, services.experiments.read_model, after)
    items, total = await services.experiments.list(
        project_id, status=status, page=page, limit=limit
    )
    return paginated(items, total=total, page=page, limit=limit)


@post(
    "/",
    operation_id="CreateExperiment",
    summary="Create an experiment in a project",
    status_code=201,
    opt={"permission": EXPERIMENT_WRITE},
)
async def create_experiment(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    data: JSONBody[ExperimentCreate],
) -> Response[Any]:
    ensure_active(request.state.project_state)
    experiment_id = str(uuid.uuid4())
    command = domain.CreateExperiment(
        experiment_id=experiment_id,
        project_id=str(data.project_id),
        name=data.name,
        description=data.description,
        base_model=data.base_model,
        task_type=data.task_type,
        config=data.config,
    )
    result = await services.commands.handle(
        EXPERIMENTS, experiment_id, command, await command_context(request), new_stream=True
    )
    return write_response(result, await _written(services, result), status_code=201)


@get(
    "/{experiment_id:uuid}",
    operation_id="GetExperiment",
    summary="Get an experiment",
    opt={"permission": PROJECT_READ},
)
async def get_experiment(
    services: NamedDependency[Services], experiment_id: FromPath[uuid.UUID]
) -> Envelope[ExperimentView]:
    events = await services.store.read_stream(domain.stream_id(str(experiment_id)))
    experiment = EXPERIMENTS.fold(events)
    if experiment is None:
        raise domain.ExperimentNotFoundError(str(experiment_id))
    return ok(
        _out(experiment, events[0].metadata.actor, events[0].recorded_at, events[-1].recorded_at)
    )


@put(
    "/{experiment_id:uuid}",
    operation_id="UpdateExperiment",
    summary="Update an experiment",
    opt={"permission": EXPERIMENT_WRITE},
)
async def update_experiment(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    experiment_id: FromPath[uuid.UUID],
    data: JSONBody[ExperimentUpdate],
) -> Response[Any]:
    ensure_active(request.state.project_state)
    expected = if_match_version(request)
    command = domain.UpdateExperiment(
        experiment_id=str(experiment_id),
        expected_version=expected,
        name=data.name,
        description=data.description,
        base_model=data.base_model,
        task_type=data.task_type,
        config=data.config,
        status=data.status,
    )
    result = await services.commands.handle(
        EXPERIMENTS,
        str(experiment_id),
        command,
        await command_context(request),
        retry_on_conflict=expected is None,
    )
    return write_response(result, await _written(services, result))


@post(
    "/{experiment_id:uuid}/start",
    operation_id="StartExperiment",
    summary="Start an experiment",
    status_code=200,
    opt={"permission": EXPERIMENT_WRITE},
)
async def start_experiment(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    experiment_id: FromPath[uuid.UUID],
) -> Response[Any]:
    ensure_active(request.state.project_state)
    command = domain.StartExperiment(experiment_id=str(experiment_id))
    result = await services.commands.handle(
        EXPERIMENTS, str(experiment_id), command, await command_context(request)
    )
    return write_response(result, await _written(services, result))


@get(
    "/{experiment_id:uuid}/history",
    operation_id="GetExperimentHistory",
    summary="An experiment's events, oldest first",
    opt={"permission": PROJECT_READ},
)
async def experiment_history(
    services: NamedDependency[Services],
    experiment_id: FromPath[uuid.UUID],
    page: Annotated[int, QueryParameter(ge=1)] = 1,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
) -> Envelope[list[HistoryEvent]]:
    return await history_page(services.store, domain.stream_id(str(experiment_id)), page, limit)


def experiments_router() -> Router:
    return Router(
        path="/experiments",
        route_handlers=[
            list_experiments,
            create_experiment,
            get_experiment,
            update_experiment,
            start_experiment,
            experiment_history,
        ],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        tags=["experiments"],
    )
