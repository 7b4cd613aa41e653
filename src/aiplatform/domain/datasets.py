"""The dataset aggregate: stream `dataset-<id>`, a chain of immutable versions `v1`, `v2`, ...
each pointing at its parent, plus the quality report computed for each version."""

from __future__ import annotations

from typing import Any

import msgspec

from aiplatform.domain.errors import AlreadyExistsError, InvalidStateError, NotFoundError
from aiplatform.eventstore.codec import Event


def stream_id(dataset_id: str) -> str:
    return f"dataset-{dataset_id}"


class NewVersion(msgspec.Struct, frozen=True, kw_only=True):
    """A file already in the blob store, to be committed as the next version."""

    message: str
    sha256: str
    size: int
    rows: int | None
    format: str
    blob_key: str
    filename: str
    uploaded_by: str


class DatasetCreated(Event, frozen=True):
    dataset_id: str
    project_id: str
    name: str
    description: str


class DatasetVersionCommitted(Event, frozen=True):
    dataset_id: str
    version: str
    parent: str | None
    message: str
    sha256: str
    size: int
    rows: int | None
    format: str
    blob_key: str
    filename: str
    uploaded_by: str


class DatasetQualityReported(Event, frozen=True):
    dataset_id: str
    version: str
    report: dict[str, Any]


class DatasetDeleted(Event, frozen=True):
    dataset_id: str


class DatasetVersion(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    parent: str | None
    message: str
    sha256: str
    size: int
    rows: int | None
    format: str
    blob_key: str
    filename: str
    uploaded_by: str
    report: dict[str, Any] | None = None


class Dataset(msgspec.Struct, frozen=True, kw_only=True):
    dataset_id: str
    project_id: str
    name: str
    description: str
    versions: dict[str, DatasetVersion] = {}
    deleted: bool = False
    version: int = 0

    @property
    def latest(self) -> DatasetVersion | None:
        return self.versions[f"v{len(self.versions)}"] if self.versions else None


def evolve(state: Dataset | None, event: Event) -> Dataset | None:
    if isinstance(event, DatasetCreated):
        return Dataset(
            dataset_id=event.dataset_id,
            project_id=event.project_id,
            name=event.name,
            description=event.description,
            version=1,
        )
    if state is None:
        return None
    version = state.version + 1
    match event:
        case DatasetVersionCommitted():
            committed = DatasetVersion(
                **{f: getattr(event, f) for f in DatasetVersion.__struct_fields__ if f != "report"}
            )
            versions = {**state.versions, event.version: committed}
            return msgspec.structs.replace(state, versions=versions, version=version)
        case DatasetQualityReported() if event.version in state.versions:
            reported = msgspec.structs.replace(state.versions[event.version], report=event.report)
            versions = {**state.versions, event.version: reported}
            return msgspec.structs.replace(state, versions=versions, version=version)
        case DatasetDeleted():
            return msgspec.structs.replace(state, deleted=True, version=version)
    return msgspec.structs.replace(state, version=version)


class CreateDataset(msgspec.Struct, frozen=True, kw_only=True):
    dataset_id: str
    project_id: str
    name: str
    description: str = ""
    first: NewVersion


class CommitVersion(msgspec.Struct, frozen=True, kw_only=True):
    dataset_id: str
    parent_version: str | None  # None: the latest version
    new: NewVersion


class RecordQuality(msgspec.Struct, frozen=True, kw_only=True):
    dataset_id: str
    version: str
    report: dict[str, Any]


class DeleteDataset(msgspec.Struct, frozen=True, kw_only=True):
    dataset_id: str


DatasetCommand = CreateDataset | CommitVersion | RecordQuality | DeleteDataset


class DatasetNotFoundError(NotFoundError):
    def __init__(self, dataset_id: str):
        super().__init__(f"dataset {dataset_id} does not exist")


class DatasetVersionNotFoundError(NotFoundError):
    def __init__(self, dataset_id: str, version: str):
        self.version = version
        super().__init__(f"dataset {dataset_id} has no version {version}")


class IdenticalVersionError(InvalidStateError):
    def __init__(self, parent: str):
        super().__init__(
            f"the file is identical to {parent} (same SHA-256); there is nothing to commit"
        )


def _existing(state: Dataset | None, dataset_id: str) -> Dataset:
    if state is None or state.deleted:
        raise DatasetNotFoundError(dataset_id)
    return state


def _committed(dataset_id: str, number: int, parent: str | None, new: NewVersion) -> Event:
    return DatasetVersionCommitted(
        dataset_id=dataset_id, version=f"v{number}", parent=parent, **msgspec.structs.asdict(new)
    )


def decide(state: Dataset | None, command: DatasetCommand) -> list[Event]:
    match command:
        case CreateDataset():
            if state is not None:
                raise AlreadyExistsError(f"dataset {command.dataset_id} already exists")
            return [
                DatasetCreated(
                    dataset_id=command.dataset_id,
                    project_id=command.project_id,
                    name=command.name,
                    description=command.description,
                ),
                _committed(command.dataset_id, 1, None, command.first),
            ]
        case CommitVersion():
            dataset = _existing(state, command.dataset_id)
            parent = (
                dataset.latest
                if command.parent_version is None
                else dataset.versions.get(command.parent_version)
            )
            if parent is None:
                raise DatasetVersionNotFoundError(dataset.dataset_id, command.parent_version or "")
            if parent.sha256 == command.new.sha256:
                raise IdenticalVersionError(parent.version)
            number = len(dataset.versions) + 1
            return [_committed(dataset.dataset_id, number, parent.version, command.new)]
        case RecordQuality():
            dataset = _existing(state, command.dataset_id)
            version = dataset.versions.get(command.version)
            if version is None:
                raise DatasetVersionNotFoundError(dataset.dataset_id, command.version)
            if version.report is not None:
                return []  # already reported: a redelivered message changes nothing
            return [
                DatasetQualityReported(
                    dataset_id=dataset.dataset_id, version=command.version, report=command.report
                )
            ]
        case DeleteDataset():
            dataset = _existing(state, command.dataset_id)
            return [DatasetDeleted(dataset_id=dataset.dataset_id)]
