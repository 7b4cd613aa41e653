"""The project aggregate as pure functions: given events, when a command, then events or an
error; and properties that hold for any sequence of commands (hypothesis)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiplatform.domain.errors import AlreadyExistsError, StaleVersionError
from aiplatform.domain.projects import (
    ArchiveProject,
    CreateProject,
    DeleteProject,
    Project,
    ProjectArchived,
    ProjectArchivedError,
    ProjectCommand,
    ProjectCreated,
    ProjectDeleted,
    ProjectNotFoundError,
    ProjectRestored,
    ProjectUpdated,
    UpdateProject,
    decide,
    evolve,
)
from aiplatform.eventstore.codec import Event

PID = "7f1c0000-0000-4000-8000-000000000001"


def given_events(*events: Event) -> Project | None:
    state: Project | None = None
    for event in events:
        state = evolve(state, event)
    return state


CREATED = ProjectCreated(
    project_id=PID, name="churn", description="", config={}, tags=["a"], owner_id="u1"
)


def test_creating_a_project_records_it_with_its_owner() -> None:
    events = decide(None, CreateProject(project_id=PID, name="churn", tags=["a"], owner_id="u1"))
    assert events == [CREATED]


def test_a_project_cannot_be_created_twice() -> None:
    with pytest.raises(AlreadyExistsError):
        decide(given_events(CREATED), CreateProject(project_id=PID, name="x", owner_id="u1"))


def test_an_update_records_only_what_changed() -> None:
    events = decide(
        given_events(CREATED),
        UpdateProject(project_id=PID, name="churn", description="new", tags=["a"]),
    )
    assert events == [ProjectUpdated(project_id=PID, description="new")]


def test_an_update_that_changes_nothing_records_nothing() -> None:
    assert decide(given_events(CREATED), UpdateProject(project_id=PID, name="churn")) == []


def test_a_stale_expected_version_is_refused_with_the_current_one() -> None:
    state = given_events(CREATED, ProjectUpdated(project_id=PID, name="b"))
    with pytest.raises(StaleVersionError) as raised:
        decide(state, UpdateProject(project_id=PID, expected_version=1, name="c"))
    assert raised.value.current == 2


def test_an_archived_project_refuses_changes_until_restored() -> None:
    state = given_events(CREATED, ProjectArchived(project_id=PID))
    with pytest.raises(ProjectArchivedError):
        decide(state, UpdateProject(project_id=PID, name="b"))
    assert decide(state, UpdateProject(project_id=PID, status="active", name="b")) == [
        ProjectRestored(project_id=PID),
        ProjectUpdated(project_id=PID, name="b"),
    ]


def test_archiving_twice_records_it_once() -> None:
    state = given_events(CREATED, ProjectArchived(project_id=PID))
    assert decide(state, ArchiveProject(project_id=PID)) == []


def test_a_deleted_project_is_gone_for_every_command() -> None:
    state = given_events(CREATED, ProjectDeleted(project_id=PID))
    for command in (
        UpdateProject(project_id=PID, name="x"),
        ArchiveProject(project_id=PID),
        DeleteProject(project_id=PID),
    ):
        with pytest.raises(ProjectNotFoundError):
            decide(state, command)


names = st.text(min_size=1, max_size=20)
tags = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=5)
commands: st.SearchStrategy[ProjectCommand] = st.one_of(
    st.builds(
        UpdateProject,
        project_id=st.just(PID),
        name=st.one_of(st.just(msgspec.UNSET), names),
        description=st.one_of(st.just(msgspec.UNSET), st.text(max_size=10)),
        tags=st.one_of(st.just(msgspec.UNSET), tags),
        status=st.one_of(st.just(msgspec.UNSET), st.sampled_from(["active", "archived"])),
    ),
    st.builds(ArchiveProject, project_id=st.just(PID)),
    st.builds(DeleteProject, project_id=st.just(PID)),
)


@given(st.lists(commands, max_size=15))
def test_any_command_sequence_keeps_version_equal_to_the_number_of_events(
    sequence: list[ProjectCommand],
) -> None:
    history: list[Event] = decide(None, CreateProject(project_id=PID, name="p", owner_id="u"))
    state = given_events(*history)
    for command in sequence:
        try:
            events = decide(state, command)
        except (ProjectArchivedError, ProjectNotFoundError):
            continue
        history.extend(events)
        for event in events:
            state = evolve(state, event)
        assert state is not None
        assert state.version == len(history)
        assert state == given_events(*history)  # folding the log gives the same state
        assert len(state.tags) == len(set(state.tags))


@given(st.lists(commands, max_size=15))
def test_every_event_survives_a_round_trip_through_json(sequence: list[ProjectCommand]) -> None:
    state = given_events(CREATED)
    for command in sequence:
        try:
            events = decide(state, command)
        except (ProjectArchivedError, ProjectNotFoundError):
            continue
        for event in events:
            decoded: Any = msgspec.json.decode(msgspec.json.encode(event), type=type(event))
            assert decoded == event
            state = evolve(state, event)
