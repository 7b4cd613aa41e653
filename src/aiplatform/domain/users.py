"""The user aggregate: stream `user-<id>`. Secrets are not events: the password hash is kept
beside the log (see migrations 0002), and events only say that it changed."""

from __future__ import annotations

from datetime import datetime

import msgspec

from aiplatform.auth.permissions import SystemRole
from aiplatform.domain.errors import (
    AlreadyExistsError,
    NotFoundError,
    StaleVersionError,
)
from aiplatform.eventstore.codec import Event


def stream_id(user_id: str) -> str:
    return f"user-{user_id}"


class UserRegistered(Event, frozen=True):
    user_id: str
    username: str
    email: str
    full_name: str
    system_role: SystemRole


class UserUpdated(Event, frozen=True):
    user_id: str
    email: str | msgspec.UnsetType = msgspec.UNSET
    full_name: str | msgspec.UnsetType = msgspec.UNSET


class UserPasswordChanged(Event, frozen=True):
    user_id: str


class UserRoleChanged(Event, frozen=True):
    user_id: str
    system_role: SystemRole


class UserDeactivated(Event, frozen=True):
    user_id: str


class UserReactivated(Event, frozen=True):
    user_id: str


class UserLoggedIn(Event, frozen=True):
    user_id: str
    session_id: str


class UserLoggedOut(Event, frozen=True):
    user_id: str
    session_id: str


class User(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    username: str
    email: str
    full_name: str
    system_role: SystemRole
    active: bool = True
    last_login_at: datetime | None = None
    version: int = 0


def evolve(state: User | None, event: Event) -> User | None:
    if isinstance(event, UserRegistered):
        return User(
            user_id=event.user_id,
            username=event.username,
            email=event.email,
            full_name=event.full_name,
            system_role=event.system_role,
            version=1,
        )
    if state is None:
        return None
    version = state.version + 1
    match event:
        case UserUpdated():
            changes = {
                f: getattr(event, f)
                for f in ("email", "full_name")
                if getattr(event, f) is not msgspec.UNSET
            }
            return msgspec.structs.replace(state, version=version, **changes)
        case UserRoleChanged():
            return msgspec.structs.replace(state, version=version, system_role=event.system_role)
        case UserDeactivated():
            return msgspec.structs.replace(state, version=version, active=False)
        case UserReactivated():
            return msgspec.structs.replace(state, version=version, active=True)
    return msgspec.structs.replace(state, version=version)


class RegisterUser(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    username: str
    email: str
    full_name: str = ""
    system_role: SystemRole = "user"


class UpdateUser(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    expected_version: int | None = None
    email: str | msgspec.UnsetType = msgspec.UNSET
    full_name: str | msgspec.UnsetType = msgspec.UNSET
    system_role: SystemRole | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    password_changed: bool = False


UserCommand = RegisterUser | UpdateUser


class UserNotFoundError(NotFoundError):
    def __init__(self, user_id: str):
        super().__init__(f"user {user_id} does not exist")


def _existing(state: User | None, user_id: str, expected_version: int | None) -> User:
    if state is None:
        raise UserNotFoundError(user_id)
    if expected_version is not None and expected_version != state.version:
        raise StaleVersionError(expected_version, state.version)
    return state


def decide(state: User | None, command: UserCommand) -> list[Event]:
    match command:
        case RegisterUser():
            if state is not None:
                raise AlreadyExistsError(f"user {command.user_id} already exists")
            return [
                UserRegistered(
                    user_id=command.user_id,
                    username=command.username,
                    email=command.email,
                    full_name=command.full_name,
                    system_role=command.system_role,
                )
            ]
        case UpdateUser():
            return _decide_update(
                _existing(state, command.user_id, command.expected_version), command
            )


def _decide_update(user: User, command: UpdateUser) -> list[Event]:
    events: list[Event] = []
    profile = {
        f: getattr(command, f)
        for f in ("email", "full_name")
        if getattr(command, f) is not msgspec.UNSET and getattr(command, f) != getattr(user, f)
    }
    if profile:
        events.append(UserUpdated(user_id=user.user_id, **profile))
    if command.password_changed:
        events.append(UserPasswordChanged(user_id=user.user_id))
    if command.system_role is not msgspec.UNSET and command.system_role != user.system_role:
        events.append(UserRoleChanged(user_id=user.user_id, system_role=command.system_role))
    if command.active is False and user.active:
        events.append(UserDeactivated(user_id=user.user_id))
    if command.active is True and not user.active:
        events.append(UserReactivated(user_id=user.user_id))
    return events
