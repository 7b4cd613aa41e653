"""The model registry: one stream per model name within a project, `model-<project>-<name>`.

All versions of a name live in one aggregate, so that version numbers are handed out without
gaps or duplicates, and "one production version per name" holds: promoting a version and
demoting the previous production one are events of the same append.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from aiplatform.domain.errors import InvalidStateError, NotFoundError, StaleVersionError
from aiplatform.eventstore.codec import Event

Stage = Literal["none", "staging", "production", "archived"]
Framework = Literal["pytorch", "safetensors"]


def stream_id(line: str) -> str:
    """`line` is `<project id>/<model name>`."""
    return f"model-{line.replace('/', '-', 1)}"


def line_of(project_id: str, name: str) -> str:
    return f"{project_id}/{name}"


class ModelCard(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    training_dataset_id: str | None = None
    training_dataset_version: str | None = None
    metrics: dict[str, float] = {}
    # Set for models a training job produced: how to train it again, or continue from it.
    template: str | None = None
    hyperparameters: dict[str, Any] = {}
    training_job_id: str | None = None


class ModelRegistered(Event, frozen=True):
    model_id: str
    project_id: str
    name: str
    version: int
    framework: Framework
    artifact_key: str
    size: int
    sha256: str
    metrics: dict[str, float]
    source_job_id: str | None
    card: ModelCard


class ModelCardUpdated(Event, frozen=True):
    model_id: str
    card: ModelCard


class ModelStageChanged(Event, frozen=True):
    model_id: str
    stage: Stage
    previous_stage: Stage


class ModelVersion(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    version: int
    framework: Framework
    artifact_key: str
    size: int
    sha256: str
    metrics: dict[str, float]
    source_job_id: str | None
    card: ModelCard
    stage: Stage = "none"


class ModelLine(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    name: str
    versions: dict[str, ModelVersion] = {}  # model id -> version
    version: int = 0  # the stream's version

    def by_stage(self, stage: Stage) -> list[ModelVersion]:
        return [v for v in self.versions.values() if v.stage == stage]


def evolve(state: ModelLine | None, event: Event) -> ModelLine | None:
    match event:
        case ModelRegistered():
            line = state or ModelLine(project_id=event.project_id, name=event.name)
            registered = ModelVersion(
                model_id=event.model_id,
                version=event.version,
                framework=event.framework,
                artifact_key=event.artifact_key,
                size=event.size,
                sha256=event.sha256,
                metrics=event.metrics,
                source_job_id=event.source_job_id,
                card=event.card,
            )
            return msgspec.structs.replace(
                line,
                versions={**line.versions, event.model_id: registered},
                version=line.version + 1,
            )
        case ModelCardUpdated() if state is not None:
            return _change(state, event.model_id, card=event.card)
        case ModelStageChanged() if state is not None:
            return _change(state, event.model_id, stage=event.stage)
    return state


def _change(line: ModelLine, model_id: str, **changes: Any) -> ModelLine:
    updated = msgspec.structs.replace(line.versions[model_id], **changes)
    return msgspec.structs.replace(
        line, versions={**line.versions, model_id: updated}, version=line.version + 1
    )


class RegisterModel(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    project_id: str
    name: str
    framework: Framework
    artifact_key: str
    size: int
    sha256: str
    metrics: dict[str, float] = {}
    source_job_id: str | None = None
    card: ModelCard = ModelCard()


class UpdateModel(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    expected_version: int | None = None  # of the model line's stream
    card: ModelCard | msgspec.UnsetType = msgspec.UNSET
    stage: Stage | msgspec.UnsetType = msgspec.UNSET


ModelCommand = RegisterModel | UpdateModel


class ModelNotFoundError(NotFoundError):
    def __init__(self, model_id: str):
        super().__init__(f"model {model_id} does not exist")


def decide(state: ModelLine | None, command: ModelCommand) -> list[Event]:
    match command:
        case RegisterModel():
            if state is not None and command.model_id in state.versions:
                return []  # registered already: a redelivered training job registers once
            next_version = 1 + max(
                (v.version for v in (state.versions.values() if state else [])), default=0
            )
            return [
                ModelRegistered(
                    model_id=command.model_id,
                    project_id=command.project_id,
                    name=command.name,
                    version=next_version,
                    framework=command.framework,
                    artifact_key=command.artifact_key,
                    size=command.size,
                    sha256=command.sha256,
                    metrics=command.metrics,
                    source_job_id=command.source_job_id,
                    card=command.card,
                )
            ]
        case UpdateModel():
            if state is None or command.model_id not in state.versions:
                raise ModelNotFoundError(command.model_id)
            if command.expected_version not in (None, state.version):
                raise StaleVersionError(command.expected_version or 0, state.version)
            return _decide_update(state, state.versions[command.model_id], command)


def _decide_update(line: ModelLine, model: ModelVersion, command: UpdateModel) -> list[Event]:
    events: list[Event] = []
    if command.card is not msgspec.UNSET and command.card != model.card:
        events.append(ModelCardUpdated(model_id=model.model_id, card=command.card))
    if command.stage is not msgspec.UNSET and command.stage != model.stage:
        if model.stage == "archived" and command.stage == "production":
            raise InvalidStateError(
                f"version {model.version} is archived; move it to staging before production"
            )
        if command.stage == "production":
            # One production version per name: the current one steps down in the same append.
            for current in line.by_stage("production"):
                events.append(
                    ModelStageChanged(
                        model_id=current.model_id, stage="archived", previous_stage="production"
                    )
                )
        events.append(
            ModelStageChanged(
                model_id=model.model_id, stage=command.stage, previous_stage=model.stage
            )
        )
    return events
