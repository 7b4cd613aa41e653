"""The experiment aggregate: stream `experiment-<id>`, always inside one project."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from aiplatform.domain.errors import (
    AlreadyExistsError,
    InvalidStateError,
    NotFoundError,
    StaleVersionError,
)
from aiplatform.eventstore.codec import Event

ExperimentStatus = Literal["draft", "running", "completed", "failed", "cancelled", "archived"]
# `running` is reached only through `start`; the rest may be set directly.
SETTABLE_STATUSES = ("draft", "completed", "failed", "cancelled", "archived")


def stream_id(experiment_id: str) -> str:
    return f"experiment-{experiment_id}"


class ExperimentCreated(Event, frozen=True):
    experiment_id: str
    project_id: str
    name: str
    description: str
    base_model: str | None
    task_type: str | None
    config: dict[str, Any]


class ExperimentUpdated(Event, frozen=True):
    experiment_id: str
    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    base_model: str | msgspec.UnsetType | None = msgspec.UNSET
    task_type: str | msgspec.UnsetType | None = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    status: ExperimentStatus | msgspec.UnsetType = msgspec.UNSET


class ExperimentStarted(Event, frozen=True):
    experiment_id: str
    job_id: str | None = None  # the training job the start submitted


class ExperimentFinished(Event, frozen=True):
    experiment_id: str
    status: Literal["completed", "failed", "cancelled"]
    metrics: dict[str, float]


class Experiment(msgspec.Struct, frozen=True, kw_only=True):
    experiment_id: str
    project_id: str
    name: str
    description: str
    base_model: str | None
    task_type: str | None
    config: dict[str, Any]
    status: ExperimentStatus = "draft"
    metrics: dict[str, float] = {}
    version: int = 0


_FIELDS = ("name", "description", "base_model", "task_type", "config", "status")


def evolve(state: Experiment | None, event: Event) -> Experiment | None:
    if isinstance(event, ExperimentCreated):
        return Experiment(
            experiment_id=event.experiment_id,
            project_id=event.project_id,
            name=event.name,
            description=event.description,
            base_model=event.base_model,
            task_type=event.task_type,
            config=event.config,
            version=1,
        )
    if state is None:
        return None
    version = state.version + 1
    match event:
        case ExperimentUpdated():
            changes = {
                f: getattr(event, f) for f in _FIELDS if getattr(event, f) is not msgspec.UNSET
            }
            return msgspec.structs.replace(state, version=version, **changes)
        case ExperimentStarted():
            return msgspec.structs.replace(state, version=version, status="running")
        case ExperimentFinished():
            return msgspec.structs.replace(
                state, version=version, status=event.status, metrics=event.metrics
            )
    return msgspec.structs.replace(state, version=version)


class CreateExperiment(msgspec.Struct, frozen=True, kw_only=True):
    experiment_id: str
    project_id: str
    name: str
    description: str = ""
    base_model: str | None = None
    task_type: str | None = None
    config: dict[str, Any] = {}


class UpdateExperiment(msgspec.Struct, frozen=True, kw_only=True):
    experiment_id: str
    expected_version: int | None = None
    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    base_model: str | msgspec.UnsetType | None = msgspec.UNSET
    task_type: str | msgspec.UnsetType | None = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    status: ExperimentStatus | msgspec.UnsetType = msgspec.UNSET


class StartExperiment(msgspec.Struct, frozen=True, kw_only=True):
    experiment_id: str
    job_id: str | None = None


class FinishExperiment(msgspec.Struct, frozen=True, kw_only=True):
    experiment_id: str
    status: Literal["completed", "failed", "cancelled"]
    metrics: dict[str, float]


ExperimentCommand = CreateExperiment | UpdateExperiment | StartExperiment | FinishExperiment


class ExperimentNotFoundError(NotFoundError):
    def __init__(self, experiment_id: str):
        super().__init__(f"experiment {experiment_id} does not exist")


def _existing(state: Experiment | None, experiment_id: str) -> Experiment:
    if state is None:
        raise ExperimentNotFoundError(experiment_id)
    return state


def decide(state: Experiment | None, command: ExperimentCommand) -> list[Event]:
    match command:
        case CreateExperiment():
            if state is not None:
                raise AlreadyExistsError(f"experiment {command.experiment_id} already exists")
            return [
                ExperimentCreated(
                    experiment_id=command.experiment_id,
                    project_id=command.project_id,
                    name=command.name,
                    description=command.description,
                    base_model=command.base_model,
                    task_type=command.task_type,
                    config=command.config,
                )
            ]
        case UpdateExperiment():
            experiment = _existing(state, command.experiment_id)
            if command.expected_version not in (None, experiment.version):
                raise StaleVersionError(command.expected_version or 0, experiment.version)
            if command.status == "running":
                raise InvalidStateError("an experiment starts running only through `start`")
            if (
                experiment.status == "running"
                and command.status is msgspec.UNSET
                and (command.config is not msgspec.UNSET or command.base_model is not msgspec.UNSET)
            ):
                raise InvalidStateError(
                    "a running experiment's configuration cannot change; stop it first"
                )
            changes = {
                f: getattr(command, f)
                for f in _FIELDS
                if getattr(command, f) is not msgspec.UNSET
                and getattr(command, f) != getattr(experiment, f)
            }
            if not changes:
                return []
            return [ExperimentUpdated(experiment_id=experiment.experiment_id, **changes)]
        case StartExperiment():
            experiment = _existing(state, command.experiment_id)
            if experiment.status in ("running", "archived"):
                raise InvalidStateError(
                    f"experiment {experiment.experiment_id} is {experiment.status}; "
                    "it cannot be started"
                )
            return [
                ExperimentStarted(experiment_id=experiment.experiment_id, job_id=command.job_id)
            ]
        case FinishExperiment():
            experiment = _existing(state, command.experiment_id)
            if experiment.status != "running":
                return []  # finished already, or changed by hand meanwhile
            return [
                ExperimentFinished(
                    experiment_id=experiment.experiment_id,
                    status=command.status,
                    metrics=command.metrics,
                )
            ]
