"""The project aggregate: stream `project-<id>`."""

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

ProjectStatus = Literal["active", "archived"]


def stream_id(project_id: str) -> str:
    return f"project-{project_id}"


# Events -------------------------------------------------------------------------------------


class ProjectCreated(Event, frozen=True):
    project_id: str
    name: str
    description: str
    config: dict[str, Any]
    tags: list[str]
    owner_id: str


class ProjectUpdated(Event, frozen=True):
    """Only the fields that changed are set."""

    project_id: str
    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET


class ProjectArchived(Event, frozen=True):
    project_id: str


class ProjectRestored(Event, frozen=True):
    project_id: str


class ProjectDeleted(Event, frozen=True):
    project_id: str


class MemberGranted(Event, frozen=True):
    """Adds a member, or changes the role of one."""

    project_id: str
    user_id: str
    role: str


class MemberRevoked(Event, frozen=True):
    project_id: str
    user_id: str


# State --------------------------------------------------------------------------------------


class Project(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    name: str
    description: str
    config: dict[str, Any]
    tags: list[str]
    owner_id: str
    status: ProjectStatus = "active"
    deleted: bool = False
    # user id -> project role; the creator is the first owner.
    members: dict[str, str] = {}
    version: int = 0


def evolve(state: Project | None, event: Event) -> Project | None:
    match event:
        case ProjectCreated():
            return Project(
                project_id=event.project_id,
                name=event.name,
                description=event.description,
                config=event.config,
                tags=event.tags,
                owner_id=event.owner_id,
                members={event.owner_id: "owner"},
                version=1,
            )
    if state is None:
        return None
    version = state.version + 1
    match event:
        case ProjectUpdated():
            changes = {
                field: getattr(event, field)
                for field in ("name", "description", "config", "tags")
                if getattr(event, field) is not msgspec.UNSET
            }
            return msgspec.structs.replace(state, version=version, **changes)
        case ProjectArchived():
            return msgspec.structs.replace(state, version=version, status="archived")
        case ProjectRestored():
            return msgspec.structs.replace(state, version=version, status="active")
        case ProjectDeleted():
            return msgspec.structs.replace(state, version=version, deleted=True)
        case MemberGranted():
            members = {**state.members, event.user_id: event.role}
            return msgspec.structs.replace(state, version=version, members=members)
        case MemberRevoked():
            members = {k: v for k, v in state.members.items() if k != event.user_id}
            return msgspec.structs.replace(state, version=version, members=members)
    return msgspec.structs.replace(state, version=version)


# Commands -----------------------------------------------------------------------------------


class CreateProject(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    name: str
    description: str = ""
    config: dict[str, Any] = {}
    tags: list[str] = []
    owner_id: str


class UpdateProject(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    expected_version: int | None = None
    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    status: ProjectStatus | msgspec.UnsetType = msgspec.UNSET


class ArchiveProject(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    expected_version: int | None = None


class DeleteProject(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    expected_version: int | None = None


class GrantMember(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    user_id: str
    role: str


class RevokeMember(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    user_id: str


ProjectCommand = (
    CreateProject | UpdateProject | ArchiveProject | DeleteProject | GrantMember | RevokeMember
)


class ProjectNotFoundError(NotFoundError):
    def __init__(self, project_id: str):
        super().__init__(f"project {project_id} does not exist")


class LastOwnerError(InvalidStateError):
    def __init__(self, project_id: str):
        super().__init__(
            f"project {project_id} must keep at least one owner; make someone else owner first"
        )


class MemberNotFoundError(NotFoundError):
    def __init__(self, project_id: str, user_id: str):
        super().__init__(f"user {user_id} is not a member of project {project_id}")


class ProjectArchivedError(InvalidStateError):
    def __init__(self, project_id: str):
        super().__init__(
            f"project {project_id} is archived; restore it (status: active) before changing it"
        )


def _existing(state: Project | None, project_id: str, expected_version: int | None) -> Project:
    if state is None or state.deleted:
        raise ProjectNotFoundError(project_id)
    if expected_version is not None and expected_version != state.version:
        raise StaleVersionError(expected_version, state.version)
    return state


def _normalised_tags(tags: list[str]) -> list[str]:
    """Tags are a set in meaning; keep the caller's order, drop repeats."""
    return list(dict.fromkeys(tags))


def decide(state: Project | None, command: ProjectCommand) -> list[Event]:
    match command:
        case CreateProject():
            if state is not None:
                raise AlreadyExistsError(f"project {command.project_id} already exists")
            return [
                ProjectCreated(
                    project_id=command.project_id,
                    name=command.name,
                    description=command.description,
                    config=command.config,
                    tags=_normalised_tags(command.tags),
                    owner_id=command.owner_id,
                )
            ]
        case UpdateProject():
            return _decide_update(
                _existing(state, command.project_id, command.expected_version), command
            )
        case ArchiveProject():
            project = _existing(state, command.project_id, command.expected_version)
            return (
                []
                if project.status == "archived"
                else [ProjectArchived(project_id=project.project_id)]
            )
        case DeleteProject():
            project = _existing(state, command.project_id, command.expected_version)
            return [ProjectDeleted(project_id=project.project_id)]
        case GrantMember():
            project = _existing(state, command.project_id, None)
            if project.members.get(command.user_id) == command.role:
                return []
            if project.members.get(command.user_id) == "owner" and _owners(project) == 1:
                raise LastOwnerError(project.project_id)
            return [
                MemberGranted(
                    project_id=project.project_id, user_id=command.user_id, role=command.role
                )
            ]
        case RevokeMember():
            project = _existing(state, command.project_id, None)
            if command.user_id not in project.members:
                raise MemberNotFoundError(project.project_id, command.user_id)
            if project.members[command.user_id] == "owner" and _owners(project) == 1:
                raise LastOwnerError(project.project_id)
            return [MemberRevoked(project_id=project.project_id, user_id=command.user_id)]


def _owners(project: Project) -> int:
    return sum(role == "owner" for role in project.members.values())


def _decide_update(project: Project, command: UpdateProject) -> list[Event]:
    events: list[Event] = []
    restoring = command.status == "active" and project.status == "archived"
    if restoring:
        events.append(ProjectRestored(project_id=project.project_id))
    changes: dict[str, Any] = {}
    for field in ("name", "description", "config", "tags"):
        value = getattr(command, field)
        if field == "tags" and value is not msgspec.UNSET:
            value = _normalised_tags(value)
        if value is not msgspec.UNSET and value != getattr(project, field):
            changes[field] = value
    if changes:
        if project.status == "archived" and not restoring:
            raise ProjectArchivedError(project.project_id)
        events.append(ProjectUpdated(project_id=project.project_id, **changes))
    if command.status == "archived" and project.status == "active":
        events.append(ProjectArchived(project_id=project.project_id))
    return events
