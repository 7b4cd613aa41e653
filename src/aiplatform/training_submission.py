"""Submitting a training job: everything that can be checked before a worker spends time on it
(the template, its hyperparameters, the dataset version against the template's needs, the base
model), then the JobSubmitted event with its training-queue row, then a token for a worker.

Used by `POST training/submit` and by starting an experiment.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from dramatiq.brokers.redis import RedisBroker

from aiplatform import training_queue
from aiplatform.aggregates import DATASETS, JOBS, MODELS
from aiplatform.commands import CommandContext, CommandHandler, CommandResult
from aiplatform.domain import jobs, models
from aiplatform.domain.errors import InvalidStateError
from aiplatform.eventstore.store import AppendResult
from aiplatform.ml.templates import (
    HyperparameterError,
    UnknownTemplateError,
    check_dataset,
    get_template,
    validate_hyperparameters,
)


class SubmissionError(ValueError):
    """What is wrong with a submission: (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class DatasetNotReadyError(InvalidStateError):
    """The dataset version's quality report, which the template's needs are checked against,
    is still being computed (409: the same request works in a moment)."""


@dataclass(frozen=True)
class Submission:
    project_id: str
    template: str
    dataset_id: str
    dataset_version: str | None
    base_model_id: str | None
    hyperparameters: dict[str, Any]
    priority: int
    time_limit_s: int
    name: str | None
    experiment_id: str | None = None


async def submit_training(
    commands: CommandHandler,
    pool: asyncpg.Pool,
    broker: RedisBroker,
    submission: Submission,
    context: CommandContext,
) -> CommandResult[jobs.Job]:
    command = await _checked(commands, pool, submission)

    async def queue_row(connection: asyncpg.Connection, _: AppendResult) -> None:
        await training_queue.enqueue_job(connection, command.job_id, command.priority)

    result = await commands.handle(
        JOBS, command.job_id, command, context, new_stream=True, in_transaction=queue_row
    )
    if not result.duplicate:
        # A token lost here (Redis away) leaves the job waiting in its queue row; the
        # scheduler's training dispatch sends tokens for jobs that wait without one.
        await asyncio.to_thread(broker.enqueue, training_queue.training_token())
    return result


async def _checked(
    commands: CommandHandler, pool: asyncpg.Pool, submission: Submission
) -> jobs.SubmitJob:
    try:
        template = get_template(submission.template)
    except UnknownTemplateError as error:
        raise SubmissionError([("template", str(error))]) from None
    problems: list[tuple[str, str]] = []
    if submission.priority not in jobs.PRIORITIES:
        problems.append(
            (
                "priority",
                f"priority must be one of {', '.join(map(str, jobs.PRIORITIES))} "
                "(0 critical, 1 high, 5 normal, 9 low)",
            )
        )
    given = dict(submission.hyperparameters)
    base_model = None
    if submission.base_model_id is not None:
        base_model = await _base_model(commands, pool, submission, template.name)
        # The base model's architecture wins: its weights have that shape.
        for name in template.architecture_hyperparameters:
            if name in base_model.card.hyperparameters:
                given[name] = base_model.card.hyperparameters[name]
    try:
        hyperparameters = validate_hyperparameters(template, given)
    except HyperparameterError as error:
        problems.extend((f"hyperparameters.{name}", message) for name, message in error.problems)
    dataset = await commands.current_state(DATASETS, submission.dataset_id)
    if dataset is None or dataset.deleted or dataset.project_id != submission.project_id:
        raise SubmissionError(
            [
                *problems,
                ("dataset_id", f"dataset {submission.dataset_id} does not exist in this project"),
            ]
        )
    version_name = submission.dataset_version or (
        dataset.latest.version if dataset.latest else None
    )
    if version_name is None or version_name not in dataset.versions:
        known = ", ".join(dataset.versions) or "none"
        wanted = version_name or "any version"
        raise SubmissionError(
            [
                *problems,
                (
                    "dataset_version",
                    f"dataset {dataset.name} has no {wanted}; its versions are: {known}",
                ),
            ]
        )
    version = dataset.versions[version_name]
    if problems:
        raise SubmissionError(problems)
    if version.report is None:
        raise DatasetNotReadyError(
            f"the quality report of dataset {dataset.name} {version_name} is still being "
            "computed; submit again when it is ready (it is part of "
            f"GET datasets/{dataset.dataset_id}/versions/{version_name})"
        )
    unusable = check_dataset(template, version.format, version.report)
    if unusable:
        raise SubmissionError(
            [
                (
                    "dataset_id",
                    f"dataset {dataset.name} {version_name} cannot train {template.name}: "
                    + "; ".join(unusable),
                )
            ]
        )
    return jobs.SubmitJob(
        job_id=str(uuid.uuid4()),
        project_id=submission.project_id,
        name=submission.name or template.name,
        template=template.name,
        dataset_id=dataset.dataset_id,
        dataset_version=version_name,
        base_model_id=submission.base_model_id,
        hyperparameters=dict(hyperparameters),
        priority=submission.priority,
        time_limit_s=submission.time_limit_s,
        experiment_id=submission.experiment_id,
    )


async def _base_model(
    commands: CommandHandler, pool: asyncpg.Pool, submission: Submission, template: str
) -> models.ModelVersion:
    model_id = submission.base_model_id
    assert model_id is not None
    missing = SubmissionError(
        [("base_model", f"model {model_id} is not registered in this project")]
    )
    try:
        model_uuid = uuid.UUID(model_id)
    except ValueError:
        raise SubmissionError([("base_model", "base_model must be a model id (UUID)")]) from None
    row = await pool.fetchrow(
        "SELECT project_id, name FROM model_index WHERE model_id = $1", model_uuid
    )
    if row is None or str(row["project_id"]) != submission.project_id:
        raise missing
    line = await commands.current_state(MODELS, models.line_of(submission.project_id, row["name"]))
    if line is None or model_id not in line.versions:
        raise missing
    model = line.versions[model_id]
    if model.card.template != template:
        trained_as = model.card.template or "an uploaded model, not one trained here"
        raise SubmissionError(
            [
                (
                    "base_model",
                    f"model {model_id} is {trained_as}; only a {template} model can be "
                    f"continued by a {template} job",
                )
            ]
        )
    return model
