"""Authentication and authorisation of every route.

Each route declares the permission it needs in `opt["permission"]`: `public`, `authenticated`,
`admin:*`, or a project permission (`project:read`, ...) checked against the caller's role in
the project named by the `project_id` path parameter. A route that declares nothing is refused:
forgetting a permission fails closed.

A project the caller cannot read answers 404, exactly like a project that does not exist, so
ids do not leak; a member without the permission gets 403.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler

from aiplatform.aggregates import PROJECTS
from aiplatform.api.errors import RequestError
from aiplatform.api.owners import RESOLVERS, owning_project
from aiplatform.api.services import Services
from aiplatform.auth.permissions import ADMIN, AUTHENTICATED, BUILTIN_PROJECT_ROLES, PUBLIC
from aiplatform.auth.tokens import InvalidTokenError
from aiplatform.domain.projects import Project, ProjectArchivedError, ProjectNotFoundError

# A route with `opt["serves"] = READ_MODEL` answers from the (cached) read model, so its guard
# checks access on the same view and hands it over as `request.state.project`; every other
# project route is checked against the project's stream.
READ_MODEL = "read_model"
# A route with `opt["project_in"] = FORM` (a multipart upload) may name its project in the form,
# which a guard cannot read without consuming the upload: without `?project_id=`, its handler
# checks the declared permission once the form is read.
FORM = "form"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    session_id: str
    system_role: str

    @property
    def is_admin(self) -> bool:
        return self.system_role == "admin"


def declared_permission(route_handler: BaseRouteHandler) -> str:
    permission = route_handler.opt.get("permission")
    if not isinstance(permission, str):
        raise PermissionDeniedException("this route declares no permission, so nobody may call it")
    return permission


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any], prefetch: list[str] | None = None
) -> tuple[Principal, list[bytes | None]]:
    """The caller, and the cached values of `prefetch` keys read along with its session."""
    services: Services = connection.app.state.services
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException(
            "authentication required: send `Authorization: Bearer <access token>` "
            "(POST /api/v2/auth/token gives one)"
        )
    try:
        claims = services.tokens.decode(token.strip())
    except InvalidTokenError:
        raise NotAuthorizedException("the access token is invalid or expired") from None
    standing, prefetched = await services.standing.of(claims.sub, claims.sid, prefetch)
    if standing is None or not standing[0]:
        raise NotAuthorizedException("this session has ended; log in again")
    principal = Principal(user_id=claims.sub, session_id=claims.sid, system_role=standing[1])
    return principal, prefetched


async def check_project_permission(
    services: Services,
    principal: Principal,
    members: dict[str, str] | None,
    project_id: str,
    permission: str,
) -> None:
    """Passes if the caller holds `permission` in a project with these `members` (None: no
    such project). 404 when they cannot even read it, so ids do not leak; 403 otherwise."""
    if members is None:
        raise ProjectNotFoundError(project_id)
    if principal.is_admin:
        return
    role = members.get(principal.user_id)
    if role is None:
        raise ProjectNotFoundError(project_id)
    # Built-in roles answer without a coroutine: this runs on every project request.
    granted = BUILTIN_PROJECT_ROLES.get(role) or await services.roles.permissions(role)
    if permission not in granted:
        raise PermissionDeniedException(f"your role in this project ({role}) lacks {permission}")


async def require_active_project(
    services: Services, principal: Principal, project_id: str, permission: str
) -> None:
    """For handlers that learn their project late (from an upload's form): the caller holds
    `permission` in it, and it is not archived."""
    try:
        project_uuid = uuid.UUID(project_id)
    except ValueError:
        raise RequestError("project_id must be a UUID", field="project_id") from None
    project = await services.commands.current_state(PROJECTS, str(project_uuid))
    members = None if project is None or project.deleted else project.members
    await check_project_permission(services, principal, members, str(project_uuid), permission)
    ensure_active(project)


def ensure_active(project: Project | None) -> None:
    """New things (experiments, dataset versions, models) go only into active projects."""
    if project is not None and project.status == "archived":
        raise ProjectArchivedError(project.project_id)


async def _guard_project(
    connection: ASGIConnection[Any, Any, Any, Any],
    principal: Principal,
    permission: str,
    serves_read_model: bool,
    cached_project: bytes | None,
    project_in_form: bool,
) -> None:
    services: Services = connection.app.state.services
    project_id = await _project_id(connection, services)
    if project_id is None and project_in_form:
        return  # a multipart upload names its project in the form: the handler checks it
    if project_id is None:
        raise ValidationException(
            "project_id is required (in the query string or the JSON body)",
            extra=[{"key": "project_id", "message": "required", "source": "query"}],
        )
    if not serves_read_model:
        # Checked against the project's own stream, never against a read model that may not
        # have caught up with a new project or a revoked member yet.
        project = await services.commands.current_state(PROJECTS, str(project_id))
        members = None if project is None or project.deleted else project.members
        await check_project_permission(services, principal, members, str(project_id), permission)
        connection.state.project_state = project
        return
    waited = None
    if connection.scope.get("query_string") or "x-after-position" in connection.headers:
        after = connection.query_params.get("after")
        waited = await services.read_after(
            connection,
            services.projects.read_model,
            int(after) if after and after.isdigit() else None,
        )
    view = await services.projects.get(project_id, fresh=waited is not None, cached=cached_project)
    await check_project_permission(
        services, principal, view.members if view else None, str(project_id), permission
    )
    connection.state.read_waited = waited
    connection.state.project = view


async def permission_guard(
    connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler
) -> None:
    if connection.scope.get("method") == "OPTIONS":
        return  # Litestar's automatic OPTIONS answers list methods only, for CORS preflights
    permission = declared_permission(route_handler)
    if permission == PUBLIC:
        return
    services: Services = connection.app.state.services
    # A past state (`as_of`) is folded from the stream, so access is checked on the stream too.
    serves_read_model = (
        route_handler.opt.get("serves") == READ_MODEL and "as_of" not in connection.query_params
    )
    path_project = connection.path_params.get("project_id")
    # A cached read of a project: its cache entry comes in the session's round trip.
    prefetch = (
        [services.projects.cache_key(path_project)]
        if serves_read_model and isinstance(path_project, uuid.UUID)
        else []
    )
    principal, prefetched = await authenticate(connection, prefetch)
    connection.state.principal = principal
    if permission == AUTHENTICATED:
        return
    if permission == ADMIN:
        if not principal.is_admin:
            raise PermissionDeniedException("this needs the admin role")
        return
    await _guard_project(
        connection,
        principal,
        permission,
        serves_read_model,
        prefetched[0] if prefetched else None,
        project_in_form=route_handler.opt.get("project_in") == FORM,
    )


async def _project_id(
    connection: ASGIConnection[Any, Any, Any, Any], services: Services
) -> uuid.UUID | None:
    """The project a request acts in: named in the path, owning the resource in the path, or
    named by a `project_id` query parameter or JSON body field."""
    path_project = connection.path_params.get("project_id")
    if isinstance(path_project, uuid.UUID):
        return path_project
    for parameter in RESOLVERS:
        resource_id = connection.path_params.get(parameter)
        if isinstance(resource_id, uuid.UUID):
            return await owning_project(services, parameter, resource_id)
    named = connection.query_params.get("project_id")
    if named is None and isinstance(connection, Request) and _is_json(connection):
        try:
            body = msgspec.json.decode(await connection.body())
        except msgspec.DecodeError:
            raise ValidationException("the body is not valid JSON") from None
        named = body.get("project_id") if isinstance(body, dict) else None
    try:
        return uuid.UUID(str(named)) if named is not None else None
    except ValueError:
        raise ValidationException(f"project_id must be a UUID, got {named!r}") from None


def _is_json(request: Request[Any, Any, Any]) -> bool:
    return request.method in ("POST", "PUT") and request.content_type[0] == "application/json"


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.state.principal
    return principal
