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
from aiplatform.api.as_of import AsOfParameter, as_of_meta, parse_as_of, past_events
from aiplatform.api.context import command_context, if_match_version
from aiplatform.api.envelope import After, Envelope, Limit, Page, ok, paginated
from aiplatform.api.guards import ensure_active
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.api.training import submission_refused
from aiplatform.auth.permissions import EXPERIMENT_WRITE, PROJECT_READ
from aiplatform.commands import CommandResult
from aiplatform.domain import experiments as domain
from aiplatform.domain import jobs
from aiplatform.domain.experiments import Experiment
from aiplatform.queries.experiments import ExperimentView
from aiplatform.training_submission import Submission, SubmissionError, submit_training

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
    page: Page = 1,
    limit: Limit = 20,
    after: After = None,
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
    services: NamedDependency[Services],
    experiment_id: FromPath[uuid.UUID],
    as_of: AsOfParameter = None,
) -> Envelope[ExperimentView]:
    past = parse_as_of(as_of)
    events = await past_events(
        services.store,
        domain.stream_id(str(experiment_id)),
        past,
        f"experiment {experiment_id}",
    )
    experiment = EXPERIMENTS.fold(events)
    if experiment is None:
        raise domain.ExperimentNotFoundError(str(experiment_id))
    return ok(
        _out(experiment, events[0].metadata.actor, events[0].recorded_at, events[-1].recorded_at),
        as_of_meta(past, events) if past is not None else None,
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
    experiment = await services.commands.current_state(EXPERIMENTS, str(experiment_id))
    if experiment is None:
        raise domain.ExperimentNotFoundError(str(experiment_id))
    # Refused before a job is submitted: a running or archived experiment does not start.
    domain.decide(experiment, domain.StartExperiment(experiment_id=experiment.experiment_id))
    context = await command_context(request)
    try:
        submitted = await submit_training(
            services.commands,
            services.pool,
            services.broker,
            _submission(experiment),
            context,
        )
    except SubmissionError as error:
        raise submission_refused(error, prefix="config.") from None
    assert submitted.state is not None
    command = domain.StartExperiment(
        experiment_id=experiment.experiment_id, job_id=submitted.state.job_id
    )
    result = await services.commands.handle(EXPERIMENTS, str(experiment_id), command, context)
    return write_response(result, await _written(services, result))


def _submission(experiment: Experiment) -> Submission:
    """The experiment's training job, from its `config` (`template`, `dataset_id`,
    `dataset_version`, `hyperparameters`, `priority`, `time_limit_s`, `model_name`) and its
    `base_model`."""
    config = experiment.config
    problems = [
        (f"config.{key}", f"an experiment needs `{key}` in its config to start training")
        for key in ("template", "dataset_id")
        if not isinstance(config.get(key), str)
    ]
    hyperparameters = config.get("hyperparameters", {})
    if not isinstance(hyperparameters, dict):
        problems.append(("config.hyperparameters", "hyperparameters must be an object"))
    numbers = {"priority": jobs.DEFAULT_PRIORITY, "time_limit_s": jobs.DEFAULT_TIME_LIMIT_S}
    for key in numbers:
        value = config.get(key, numbers[key])
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append((f"config.{key}", f"{key} must be an integer"))
        elif key == "time_limit_s" and not 1 <= value <= jobs.MAX_TIME_LIMIT_S:
            problems.append((f"config.{key}", f"{key} must be 1-{jobs.MAX_TIME_LIMIT_S}"))
        else:
            numbers[key] = value
    if problems:
        raise submission_refused(SubmissionError(problems))
    version = config.get("dataset_version")
    name = config.get("model_name")
    return Submission(
        project_id=experiment.project_id,
        template=str(config["template"]),
        dataset_id=str(config["dataset_id"]),
        dataset_version=str(version) if version is not None else None,
        base_model_id=experiment.base_model,
        hyperparameters=hyperparameters,
        priority=numbers["priority"],
        time_limit_s=numbers["time_limit_s"],
        name=str(name) if name is not None else experiment.name,
        experiment_id=experiment.experiment_id,
    )


@get(
    "/{experiment_id:uuid}/history",
    operation_id="GetExperimentHistory",
    summary="An experiment's events, oldest first",
    opt={"permission": PROJECT_READ},
)
async def experiment_history(
    services: NamedDependency[Services],
    experiment_id: FromPath[uuid.UUID],
    page: Page = 1,
    limit: Limit = 50,
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
