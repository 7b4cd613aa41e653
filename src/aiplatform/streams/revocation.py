"""Which open streams an event takes access away from.

Channels are authorised when a stream opens. An event that may take that access away (a member
removed or given another role, a project deleted, a role's permissions changed, a user
deactivated or no longer an admin) closes the open streams that depended on it; the client's
reconnect is authorised afresh and refused what it can no longer read. Closing a stream that
could have stayed open costs one reconnect, which resumes with `Last-Event-ID` and loses
nothing, so where the feed cannot tell (a job whose project it has not seen), it closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from aiplatform.domain.projects import MemberGranted, MemberRevoked, ProjectDeleted
from aiplatform.domain.roles import RoleDeleted, RolePermissionsChanged
from aiplatform.domain.users import UserDeactivated, UserRoleChanged
from aiplatform.eventstore.codec import Event

REVOKED = "your access changed: reconnect to be authorised again"


class Viewer(Protocol):
    user_id: str
    is_admin: bool
    channels: list[str]


V = TypeVar("V", bound=Viewer)
# A stream's project, if the feed knows it.
ProjectOf = Callable[[str], str | None]


# The events `revoked_viewers` may close streams for.
_REVOKING = (
    MemberRevoked,
    MemberGranted,
    ProjectDeleted,
    RolePermissionsChanged,
    RoleDeleted,
    UserDeactivated,
    UserRoleChanged,
)


def may_revoke(event: Event) -> bool:
    """Whether `event` can take access away from any stream: the feed asks this of every
    event, and looks at its subscribers only when it can."""
    return isinstance(event, _REVOKING)


def revoked_viewers(event: Event, viewers: Iterable[V], project_of: ProjectOf) -> list[V]:
    match event:
        case (
            MemberRevoked(project_id=project_id, user_id=user_id)
            | MemberGranted(project_id=project_id, user_id=user_id)
        ):
            return [
                v
                for v in viewers
                if v.user_id == user_id
                and not v.is_admin
                and _reads_project(v, project_id, project_of)
            ]
        case ProjectDeleted(project_id=project_id):
            return [v for v in viewers if _reads_project(v, project_id, project_of)]
        case RolePermissionsChanged() | RoleDeleted():
            return [v for v in viewers if not v.is_admin and _reads_any_project(v)]
        case UserDeactivated(user_id=user_id):
            return [v for v in viewers if v.user_id == user_id]
        case UserRoleChanged(user_id=user_id):
            return [v for v in viewers if v.user_id == user_id and v.is_admin]
    return []


def _reads_project(viewer: Viewer, project_id: str, project_of: ProjectOf) -> bool:
    for channel in viewer.channels:
        kind, _, identifier = channel.partition(":")
        if kind == "project" and identifier == project_id:
            return True
        if kind == "job" and project_of(f"job-{identifier}") in (project_id, None):
            return True
    return False


def _reads_any_project(viewer: Viewer) -> bool:
    return any(channel.startswith(("project:", "job:")) for channel in viewer.channels)
