"""Custom project roles: stream `role-<name>`. The built-in roles are not events; they are
fixed in `auth.permissions` and cannot be redefined."""

from __future__ import annotations

import msgspec

from aiplatform.auth.permissions import BUILTIN_PROJECT_ROLES
from aiplatform.domain.errors import AlreadyExistsError, NotFoundError
from aiplatform.eventstore.codec import Event


def stream_id(name: str) -> str:
    return f"role-{name}"


class RoleCreated(Event, frozen=True):
    name: str
    description: str
    permissions: list[str]


class RolePermissionsChanged(Event, frozen=True):
    name: str
    permissions: list[str]


class RoleDeleted(Event, frozen=True):
    name: str


class Role(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    permissions: list[str]
    deleted: bool = False
    version: int = 0


def evolve(state: Role | None, event: Event) -> Role | None:
    match event:
        case RoleCreated():
            return Role(
                name=event.name,
                description=event.description,
                permissions=event.permissions,
                version=1,
            )
        case RolePermissionsChanged() if state is not None:
            return msgspec.structs.replace(
                state, permissions=event.permissions, version=state.version + 1
            )
        case RoleDeleted() if state is not None:
            return msgspec.structs.replace(state, deleted=True, version=state.version + 1)
    return state


class CreateRole(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    permissions: list[str]


class ChangeRolePermissions(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    permissions: list[str]


class DeleteRole(msgspec.Struct, frozen=True, kw_only=True):
    name: str


RoleCommand = CreateRole | ChangeRolePermissions | DeleteRole


def decide(state: Role | None, command: RoleCommand) -> list[Event]:
    match command:
        case CreateRole():
            if command.name in BUILTIN_PROJECT_ROLES or (state is not None and not state.deleted):
                raise AlreadyExistsError(f"a role named {command.name!r} already exists")
            return [
                RoleCreated(
                    name=command.name,
                    description=command.description,
                    permissions=sorted(set(command.permissions)),
                )
            ]
        case ChangeRolePermissions():
            if state is None or state.deleted:
                raise NotFoundError(f"role {command.name!r} does not exist")
            permissions = sorted(set(command.permissions))
            if permissions == state.permissions:
                return []
            return [RolePermissionsChanged(name=command.name, permissions=permissions)]
        case DeleteRole():
            if state is None or state.deleted:
                raise NotFoundError(f"role {command.name!r} does not exist")
            return [RoleDeleted(name=command.name)]
