"""/api/v2/training: the templates and model architectures, submitting jobs, cancelling them.

Reading jobs (list, status, logs, history) is in api/jobs.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody

from aiplatform import training_queue
from aiplatform.aggregates import EXPERIMENTS, JOBS
from aiplatform.api.context import command_context
from aiplatform.api.envelope import Envelope, ok
from aiplatform.api.guards import ensure_active
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUTHENTICATED, TRAINING_SUBMIT
from aiplatform.commands import CommandResult
from aiplatform.domain import experiments, jobs
from aiplatform.ml.templates import TEMPLATES, Template
from aiplatform.training_submission import Submission, SubmissionError, submit_training

ModelName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
Priority = Annotated[int, msgspec.Meta(ge=0, le=9)]
TimeLimit = Annotated[int, msgspec.Meta(ge=1, le=jobs.MAX_TIME_LIMIT_S)]


class TrainingSubmit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    project_id: uuid.UUID
    template: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    dataset_id: uuid.UUID
    dataset_version: Annotated[str, msgspec.Meta(pattern=r"^v[1-9][0-9]{0,8}$")] | None = None
    base_model: uuid.UUID | None = None
    hyperparameters: dict[str, Any] = {}
    priority: Priority = jobs.DEFAULT_PRIORITY
    time_limit_s: TimeLimit = jobs.DEFAULT_TIME_LIMIT_S
    name: ModelName | None = None


class SubmittedJob(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    template: str
    dataset_id: uuid.UUID
    dataset_version: str
    base_model_id: str | None
    hyperparameters: dict[str, Any]
    priority: int
    time_limit_s: int
    experiment_id: str | None
    status: str
    cancel_requested: bool
    version: int


class Architecture(msgspec.Struct, frozen=True, kw_only=True):
    template: str
    title: str
    task: str
    description: str
    architecture: dict[str, Any]  # the hyperparameters that shape the weights, with defaults


def job_view(job: jobs.Job) -> SubmittedJob:
    return SubmittedJob(
        id=uuid.UUID(job.job_id),
        project_id=uuid.UUID(job.project_id),
        name=job.name,
        template=job.template,
        dataset_id=uuid.UUID(job.dataset_id),
        dataset_version=job.dataset_version,
        base_model_id=job.base_model_id,
        hyperparameters=job.hyperparameters,
        priority=job.priority,
        time_limit_s=job.time_limit_s,
        experiment_id=job.experiment_id,
        status=job.status,
        cancel_requested=job.cancel_requested,
        version=job.version,
    )


def submission_refused(error: SubmissionError, prefix: str = "") -> ValidationException:
    """A 422 naming every field that is wrong, like schema validation errors. `prefix`: where
    the submission's fields sit in the request (an experiment's `config.`)."""
    problems = [
        (field if field.startswith(prefix) else prefix + field, message)
        for field, message in error.problems
    ]
    return ValidationException(
        detail="; ".join(f"{field}: {message}" for field, message in problems),
        extra=[{"key": field, "message": message, "source": "body"} for field, message in problems],
    )


@get(
    "/templates",
    operation_id="ListTrainingTemplates",
    summary="The training templates, with their hyperparameters and dataset requirements",
    opt={"permission": AUTHENTICATED},
)
async def list_templates() -> Envelope[list[Template]]:
    return ok(list(TEMPLATES))


@get(
    "/models",
    operation_id="ListTrainableModels",
    summary="The model architectures training can build, one per template",
    description="A registered model trained from a template (its card names the template) "
    "can be continued from with `base_model` in a submission.",
    opt={"permission": AUTHENTICATED},
)
async def list_trainable_models() -> Envelope[list[Architecture]]:
    return ok(
        [
            Architecture(
                template=template.name,
                title=template.title,
                task=template.task,
                description=template.description,
                architecture={
                    h.name: h.default for h in template.hyperparameters if h.architecture
                },
            )
            for template in TEMPLATES
        ]
    )


@post(
    "/submit",
    operation_id="SubmitTrainingJob",
    summary="Submit a training job",
    status_code=201,
    opt={"permission": TRAINING_SUBMIT},
)
async def submit(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    data: JSONBody[TrainingSubmit],
) -> Response[Any]:
    ensure_active(request.state.project_state)
    submission = Submission(
        project_id=str(data.project_id),
        template=data.template,
        dataset_id=str(data.dataset_id),
        dataset_version=data.dataset_version,
        base_model_id=str(data.base_model) if data.base_model else None,
        hyperparameters=data.hyperparameters,
        priority=data.priority,
        time_limit_s=data.time_limit_s,
        name=data.name,
    )
    try:
        result = await submit_training(
            services.commands,
            services.pool,
            services.broker,
            submission,
            await command_context(request),
        )
    except SubmissionError as error:
        raise submission_refused(error) from None
    assert result.state is not None
    return write_response(result, job_view(result.state), status_code=201)


@post(
    "/jobs/{job_id:uuid}/cancel",
    operation_id="CancelTrainingJob",
    summary="Cancel a job: a waiting one at once, a running one within seconds",
    status_code=202,
    opt={"permission": TRAINING_SUBMIT},
)
async def cancel(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    job_id: FromPath[uuid.UUID],
) -> Response[Any]:
    result: CommandResult[jobs.Job] = await services.commands.handle(
        JOBS, str(job_id), jobs.CancelJob(job_id=str(job_id)), await command_context(request)
    )
    job = result.state
    assert job is not None
    if job.status == "cancelled":
        # It never ran: no worker will tell its experiment, so the cancel does.
        await training_queue.release(services.pool, job.job_id)
        if job.experiment_id is not None and result.position is not None:
            await services.commands.handle(
                EXPERIMENTS,
                job.experiment_id,
                experiments.FinishExperiment(
                    experiment_id=job.experiment_id, status="cancelled", metrics={}
                ),
                await command_context(request),
            )
    else:
        await training_queue.request_cancel(services.pool, job.job_id)
    return write_response(result, job_view(job), status_code=202)


def training_router() -> Router:
    return Router(
        path="/training",
        route_handlers=[list_templates, list_trainable_models, submit, cancel],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        tags=["training"],
    )
