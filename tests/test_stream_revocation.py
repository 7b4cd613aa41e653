"""Which open streams an access-changing event closes (pure: no feed, no server)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from aiplatform.domain.projects import MemberGranted, MemberRevoked, ProjectDeleted, ProjectUpdated
from aiplatform.domain.roles import RolePermissionsChanged
from aiplatform.domain.users import UserDeactivated, UserRoleChanged
from aiplatform.eventstore.codec import Event
from aiplatform.streams.revocation import may_revoke, revoked_viewers

PROJECT = "p-1"
OTHER_PROJECT = "p-2"
JOB_IN_PROJECT = "j-1"
JOB_ELSEWHERE = "j-2"
UNKNOWN_JOB = "j-3"
PROJECT_OF = {f"job-{JOB_IN_PROJECT}": PROJECT, f"job-{JOB_ELSEWHERE}": OTHER_PROJECT}


@dataclass(eq=False)
class Viewer:
    user_id: str
    channels: list[str]
    is_admin: bool = False
    name: str = field(default="")


def closed(event: Event, *viewers: Viewer) -> set[str]:
    return {v.name for v in revoked_viewers(event, viewers, PROJECT_OF.get)}


ALICE_PROJECT = Viewer("alice", [f"project:{PROJECT}"], name="alice-project")
ALICE_JOB = Viewer("alice", [f"job:{JOB_IN_PROJECT}"], name="alice-job")
ALICE_OTHER_JOB = Viewer("alice", [f"job:{JOB_ELSEWHERE}"], name="alice-other-job")
ALICE_UNKNOWN_JOB = Viewer("alice", [f"job:{UNKNOWN_JOB}"], name="alice-unknown-job")
ALICE_GPU = Viewer("alice", ["gpu", "notifications:alice"], name="alice-gpu")
BOB_PROJECT = Viewer("bob", [f"project:{PROJECT}"], name="bob-project")
ROOT_PROJECT = Viewer("root", [f"project:{PROJECT}", "admin"], is_admin=True, name="root")
EVERYONE = (
    ALICE_PROJECT,
    ALICE_JOB,
    ALICE_OTHER_JOB,
    ALICE_UNKNOWN_JOB,
    ALICE_GPU,
    BOB_PROJECT,
    ROOT_PROJECT,
)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # The member's streams of that project (and of jobs the feed cannot place) close.
        (
            MemberRevoked(project_id=PROJECT, user_id="alice"),
            {"alice-project", "alice-job", "alice-unknown-job"},
        ),
        (
            MemberGranted(project_id=PROJECT, user_id="alice", role="viewer"),
            {"alice-project", "alice-job", "alice-unknown-job"},
        ),
        # Admins read every project: removing one from a project takes nothing away.
        (MemberRevoked(project_id=PROJECT, user_id="root"), set()),
        (
            ProjectDeleted(project_id=PROJECT),
            {"alice-project", "alice-job", "alice-unknown-job", "bob-project", "root"},
        ),
        (
            RolePermissionsChanged(name="reviewer", permissions=["project:read"]),
            {"alice-project", "alice-job", "alice-other-job", "alice-unknown-job", "bob-project"},
        ),
        (
            UserDeactivated(user_id="alice"),
            {"alice-project", "alice-job", "alice-other-job", "alice-unknown-job", "alice-gpu"},
        ),
        (UserRoleChanged(user_id="root", system_role="user"), {"root"}),
        (UserRoleChanged(user_id="alice", system_role="admin"), set()),
        (ProjectUpdated(project_id=PROJECT, name="renamed"), set()),
    ],
)
def test_an_event_closes_exactly_the_streams_whose_access_it_may_take(
    event: Event, expected: set[str]
) -> None:
    assert closed(event, *EVERYONE) == expected
    # The feed looks for streams to close only where `may_revoke` says it can find some.
    if expected:
        assert may_revoke(event)


def test_events_that_change_no_access_are_not_looked_at() -> None:
    assert not may_revoke(ProjectUpdated(project_id=PROJECT, name="renamed"))
