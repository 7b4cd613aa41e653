"""/api/v2/projects: the projects resource."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from aiplatform.aggregates import PROJECTS
from aiplatform.api.as_of import AsOf, AsOfParameter, as_of_meta, parse_as_of, past_events
from aiplatform.api.context import command_context, if_match_version
from aiplatform.api.envelope import After, Envelope, Limit, Page, ok, paginated
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import READ_MODEL, Principal, provide_principal
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import (
    AUTHENTICATED,
    MEMBER_MANAGE,
    PROJECT_DELETE,
    PROJECT_READ,
    PROJECT_WRITE,
)
from aiplatform.commands import CommandResult
from aiplatform.domain import projects as domain
from aiplatform.domain.projects import Project
from aiplatform.queries.projects import ProjectFilters, ProjectView

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"\S")]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=50)]
Config = dict[str, Any]


class ProjectCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    description: Description = ""
    config: Config = {}
    tags: Tags = []


class ProjectUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out keep their value. `status` archives or restores the project."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    config: Config | msgspec.UnsetType = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET
    status: Literal["active", "archived"] | msgspec.UnsetType = msgspec.UNSET


class ProjectDeletion(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    version: int
    deleted: bool = True


def _view(result: CommandResult[Project]) -> ProjectView:
    project = result.state
    assert project is not None
    assert result.created_at is not None
    assert result.updated_at is not None
    return ProjectView(
        id=uuid.UUID(project.project_id),
        name=project.name,
        description=project.description,
        config=project.config,
        tags=project.tags,
        status=project.status,
        owner_id=project.owner_id,
        members=project.members,
        version=project.version,
        created_at=result.created_at,
        updated_at=result.updated_at,
    )


@get(
    "/",
    operation_id="ListProjects",
    summary="List the projects the caller is a member of (admins: all)",
    opt={"permission": AUTHENTICATED},
)
async def list_projects(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    status: Annotated[Literal["active", "archived"] | None, QueryParameter()] = None,
    tag: Annotated[str | None, QueryParameter(max_length=64)] = None,
    owner_id: Annotated[str | None, QueryParameter(max_length=255)] = None,
    q: Annotated[
        str | None, QueryParameter(max_length=255, description="name contains (any case)")
    ] = None,
    page: Page = 1,
    limit: Limit = 20,
    after: After = None,
) -> Envelope[list[ProjectView]]:
    waited = await services.read_after(request, services.projects.read_model, after)
    filters = ProjectFilters(
        member_id=None if principal.is_admin else principal.user_id,
        status=status,
        tag=tag,
        owner_id=owner_id,
        q=q,
        page=page,
        limit=limit,
    )
    result = await services.projects.list(filters, fresh=waited is not None)
    envelope = paginated(result.items, total=result.total, page=page, limit=limit)
    if waited is False and envelope.meta is not None:
        envelope.meta["stale"] = True
    return envelope


@post(
    "/",
    operation_id="CreateProject",
    summary="Create a project; the caller becomes its owner",
    status_code=201,
    opt={"permission": AUTHENTICATED},
)
async def create_project(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    data: JSONBody[ProjectCreate],
) -> Response[Envelope[ProjectView]]:
    context = await command_context(request)
    project_id = str(uuid.uuid4())
    command = domain.CreateProject(
        project_id=project_id,
        name=data.name,
        description=data.description,
        config=data.config,
        tags=data.tags,
        owner_id=context.metadata.actor,
    )
    result = await services.commands.handle(
        PROJECTS, project_id, command, context, retry_on_conflict=False, new_stream=True
    )
    return write_response(result, _view(result), status_code=201)


@get(
    "/{project_id:uuid}",
    operation_id="GetProject",
    summary="Get a project",
    opt={"permission": PROJECT_READ, "serves": READ_MODEL},
)
async def get_project(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: FromPath[uuid.UUID],
    after: After = None,
    as_of: AsOfParameter = None,
) -> Response[Envelope[ProjectView]]:
    """`project_id` and `after` are read by the guard, which loads the project to check the
    caller's access (after waiting for `after`, when given)."""
    past = parse_as_of(as_of)
    if past is not None:
        return await _project_as_of(services, str(project_id), past)
    project: ProjectView = request.state.project
    meta = {"stale": True} if request.state.read_waited is False else None
    return Response(ok(project, meta), headers={"ETag": f'"{project.version}"'})


async def _project_as_of(
    services: Services, project_id: str, as_of: AsOf
) -> Response[Envelope[ProjectView]]:
    events = await past_events(
        services.store, domain.stream_id(project_id), as_of, f"project {project_id}"
    )
    project = PROJECTS.fold(events)
    if project is None:
        raise domain.ProjectNotFoundError(project_id)
    past = CommandResult(
        state=project,
        stream_version=project.version,
        position=events[-1].global_position,
        created_at=events[0].recorded_at,
        updated_at=events[-1].recorded_at,
    )
    return Response(ok(_view(past), as_of_meta(as_of, events)))


@put(
    "/{project_id:uuid}",
    operation_id="UpdateProject",
    summary="Update a project",
    opt={"permission": PROJECT_WRITE},
)
async def update_project(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: FromPath[uuid.UUID],
    data: JSONBody[ProjectUpdate],
) -> Response[Envelope[ProjectView]]:
    context = await command_context(request)
    expected = if_match_version(request)
    command = domain.UpdateProject(
        project_id=str(project_id),
        expected_version=expected,
        name=data.name,
        description=data.description,
        config=data.config,
        tags=data.tags,
        status=data.status,
    )
    result = await services.commands.handle(
        PROJECTS, str(project_id), command, context, retry_on_conflict=expected is None
    )
    return write_response(result, _view(result))


@post(
    "/{project_id:uuid}/archive",
    operation_id="ArchiveProject",
    summary="Archive a project",
    status_code=200,
    opt={"permission": PROJECT_WRITE},
)
async def archive_project(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: FromPath[uuid.UUID],
) -> Response[Envelope[ProjectView]]:
    context = await command_context(request)
    expected = if_match_version(request)
    command = domain.ArchiveProject(project_id=str(project_id), expected_version=expected)
    result = await services.commands.handle(
        PROJECTS, str(project_id), command, context, retry_on_conflict=expected is None
    )
    return write_response(result, _view(result))


@delete(
    "/{project_id:uuid}",
    operation_id="DeleteProject",
    summary="Delete a project",
    status_code=200,
    opt={"permission": PROJECT_DELETE},
)
async def delete_project(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: FromPath[uuid.UUID],
) -> Response[Envelope[ProjectDeletion]]:
    context = await command_context(request)
    expected = if_match_version(request)
    command = domain.DeleteProject(project_id=str(project_id), expected_version=expected)
    result = await services.commands.handle(
        PROJECTS, str(project_id), command, context, retry_on_conflict=expected is None
    )
    return write_response(result, ProjectDeletion(id=project_id, version=result.stream_version))


@get(
    "/{project_id:uuid}/history",
    operation_id="GetProjectHistory",
    summary="A project's events, oldest first",
    opt={"permission": PROJECT_READ},
)
async def project_history(
    services: NamedDependency[Services],
    project_id: FromPath[uuid.UUID],
    page: Page = 1,
    limit: Limit = 50,
) -> Envelope[list[HistoryEvent]]:
    return await history_page(
        services.store,
        domain.stream_id(str(project_id)),
        page,
        limit,
        missing=domain.ProjectNotFoundError(str(project_id)),
    )


class MemberGrant(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: uuid.UUID
    role: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]


@post(
    "/{project_id:uuid}/members",
    operation_id="GrantProjectMember",
    summary="Add a member to the project, or change a member's role",
    status_code=200,
    opt={"permission": MEMBER_MANAGE},
)
async def grant_member(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: FromPath[uuid.UUID],
    data: JSONBody[MemberGrant],
) -> Response[Envelope[ProjectView]]:
    if await services.accounts.by_id(str(data.user_id)) is None:
        raise RequestError(f"user {data.user_id} does not exist", field="user_id", status_code=422)
    if not await services.roles.exists(data.role):
        raise RequestError(
            f"role {data.role!r} does not exist (GET /api/v2/roles lists them)",
            field="role",
            status_code=422,
        )
    command = domain.GrantMember(
        project_id=str(project_id), user_id=str(data.user_id), role=data.role
    )
    result = await services.commands.handle(
        PROJECTS, str(project_id), command, await command_context(request)
    )
    return write_response(result, _view(result))


@delete(
    "/{project_id:uuid}/members/{user_id:uuid}",
    operation_id="RevokeProjectMember",
    summary="Remove a member from the project",
    status_code=200,
    opt={"permission": MEMBER_MANAGE},
)
async def revoke_member(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    project_id: FromPath[uuid.UUID],
    user_id: FromPath[uuid.UUID],
) -> Response[Envelope[ProjectView]]:
    command = domain.RevokeMember(project_id=str(project_id), user_id=str(user_id))
    result = await services.commands.handle(
        PROJECTS, str(project_id), command, await command_context(request)
    )
    return write_response(result, _view(result))


def projects_router() -> Router:
    return Router(
        path="/projects",
        route_handlers=[
            list_projects,
            create_project,
            get_project,
            update_project,
            archive_project,
            delete_project,
            project_history,
            grant_member,
            revoke_member,
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["projects"],
    )
