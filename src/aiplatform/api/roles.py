"""/api/v2/roles: the project roles, built-in and custom."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from aiplatform.aggregates import ROLES
from aiplatform.api.as_of import AsOfParameter, as_of_meta, parse_as_of, past_events
from aiplatform.api.context import command_context
from aiplatform.api.envelope import Envelope, Limit, Page, ok
from aiplatform.api.errors import RequestError
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import (
    ADMIN,
    AUTHENTICATED,
    BUILTIN_PROJECT_ROLES,
    PROJECT_PERMISSIONS,
)
from aiplatform.domain import roles as domain
from aiplatform.domain.errors import NotFoundError
from aiplatform.queries.roles import RoleView

RoleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{1,49}$")]


class RoleCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: RoleName
    permissions: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""


@get("/", operation_id="ListRoles", summary="List project roles", opt={"permission": AUTHENTICATED})
async def list_roles(services: NamedDependency[Services]) -> Envelope[list[RoleView]]:
    return ok(await services.roles.list())


@post(
    "/",
    operation_id="CreateRole",
    summary="Create a custom project role",
    opt={"permission": ADMIN},
)
async def create_role(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    data: JSONBody[RoleCreate],
) -> Response[Any]:
    unknown = sorted(set(data.permissions) - set(PROJECT_PERMISSIONS))
    if unknown:
        raise RequestError(
            f"unknown permission(s) {', '.join(unknown)}; known: {', '.join(PROJECT_PERMISSIONS)}",
            field="permissions",
            status_code=422,
        )
    command = domain.CreateRole(
        name=data.name, description=data.description, permissions=data.permissions
    )
    result = await services.commands.handle(
        ROLES, data.name, command, await command_context(request), retry_on_conflict=False
    )
    role = result.state
    assert role is not None
    view = RoleView(
        name=role.name,
        description=role.description,
        permissions=role.permissions,
        builtin=False,
        version=role.version,
        created_at=result.created_at,
    )
    meta = {"version": result.stream_version, "position": result.position}
    return Response(ok(view, meta), status_code=201)


@get(
    "/{name:str}",
    operation_id="GetRole",
    summary="Get a project role (as it was at `as_of`, when given)",
    opt={"permission": AUTHENTICATED},
)
async def get_role(
    services: NamedDependency[Services], name: FromPath[str], as_of: AsOfParameter = None
) -> Envelope[RoleView]:
    past = parse_as_of(as_of)
    if name in BUILTIN_PROJECT_ROLES:
        # Built-in roles are defined in code and have no history.
        return ok(next(role for role in await services.roles.list() if role.name == name))
    events = await past_events(services.store, domain.stream_id(name), past, f"role {name!r}")
    role = ROLES.fold(events)
    if role is None or role.deleted:
        raise NotFoundError(f"role {name!r} does not exist (GET /api/v2/roles lists them)")
    view = RoleView(
        name=role.name,
        description=role.description,
        permissions=role.permissions,
        builtin=False,
        version=role.version,
        created_at=events[0].recorded_at,
    )
    return ok(view, as_of_meta(past, events) if past is not None else None)


@get(
    "/{name:str}/history",
    operation_id="GetRoleHistory",
    summary="A custom role's events, oldest first",
    opt={"permission": ADMIN},
)
async def role_history(
    services: NamedDependency[Services],
    name: FromPath[str],
    page: Page = 1,
    limit: Limit = 50,
) -> Envelope[list[HistoryEvent]]:
    return await history_page(
        services.store,
        domain.stream_id(name),
        page,
        limit,
        missing=NotFoundError(f"role {name!r} has no history (built-in roles are defined in code)"),
    )


def roles_router() -> Router:
    return Router(
        path="/roles",
        route_handlers=[list_roles, create_role, get_role, role_history],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        tags=["roles"],
    )
