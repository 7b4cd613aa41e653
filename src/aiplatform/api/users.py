"""/api/v2/users: accounts. Admins manage everyone; a user reads and edits their own profile
and password, and nothing else of theirs (not their role, not their active flag)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, JSONBody, QueryParameter

from aiplatform.aggregates import USERS
from aiplatform.api.as_of import AsOf, AsOfParameter, as_of_meta, parse_as_of, past_events
from aiplatform.api.context import command_context, if_match_version
from aiplatform.api.envelope import After, Envelope, Limit, Page, ok, paginated
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import Principal, provide_principal
from aiplatform.api.history import HistoryEvent, history_page
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.accounts import create_account, update_account
from aiplatform.auth.passwords import (
    hash_password_off_loop,
    policy_violation,
    verify_password_off_loop,
)
from aiplatform.auth.permissions import ADMIN, AUTHENTICATED
from aiplatform.domain import users as domain
from aiplatform.domain.users import User
from aiplatform.eventstore.store import AppendResult
from aiplatform.queries.users import UserView

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")]
Email = Annotated[
    str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
FullName = Annotated[str, msgspec.Meta(max_length=200)]
Password = Annotated[str, msgspec.Meta(max_length=1024)]
SystemRoleField = Literal["admin", "user"]


class UserCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    username: Username
    email: Email
    password: Password
    full_name: FullName = ""
    system_role: SystemRoleField = "user"


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Profile fields for the user themselves; `system_role` and `active` for admins only.
    Changing one's own password needs `current_password`."""

    email: Email | msgspec.UnsetType = msgspec.UNSET
    full_name: FullName | msgspec.UnsetType = msgspec.UNSET
    password: Password | msgspec.UnsetType = msgspec.UNSET
    current_password: Password | msgspec.UnsetType = msgspec.UNSET
    system_role: SystemRoleField | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class UserOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    username: str
    email: str
    full_name: str
    system_role: str
    active: bool
    version: int
    last_login_at: datetime | None = None


def user_out(user: User) -> UserOut:
    return UserOut(
        id=uuid.UUID(user.user_id),
        username=user.username,
        email=user.email,
        full_name=user.full_name,
        system_role=user.system_role,
        active=user.active,
        version=user.version,
    )


async def known_user(services: Services, user_id: uuid.UUID) -> UserOut | None:
    """From the read model; a user too new to be projected is folded from its stream. (The
    stream grows with every login, so it is not read on every request.)"""
    view = await services.users.get(user_id)
    if view is not None:
        return UserOut(
            id=view.id,
            username=view.username,
            email=view.email,
            full_name=view.full_name,
            system_role=view.system_role,
            active=view.active,
            version=view.version,
            last_login_at=view.last_login_at,
        )
    user = await services.commands.current_state(USERS, str(user_id))
    return user_out(user) if user is not None else None


def _check_password(password: str, username: str) -> None:
    problem = policy_violation(password, username)
    if problem is not None:
        raise RequestError(problem, field="password", status_code=422)


@get("/", operation_id="ListUsers", summary="List users", opt={"permission": ADMIN})
async def list_users(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    q: Annotated[str | None, QueryParameter(max_length=255)] = None,
    page: Page = 1,
    limit: Limit = 20,
    after: After = None,
) -> Envelope[list[UserView]]:
    await services.read_after(request, services.users.read_model, after)
    users, total = await services.users.list(q=q, page=page, limit=limit)
    return paginated(users, total=total, page=page, limit=limit)


class DirectoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    username: str
    full_name: str


# Names only: enough to pick a project member or to name one, without anyone's email or role.
_DIRECTORY = """
SELECT id, username, full_name FROM {table}
 WHERE ($1::uuid[] IS NULL OR id = ANY($1))
   AND ($1::uuid[] IS NOT NULL OR active)
   AND ($2::text IS NULL OR username ILIKE $2 OR full_name ILIKE $2)
 ORDER BY username
 LIMIT $3
"""


@get(
    "/directory",
    operation_id="ListUserDirectory",
    summary="Find users by name, to add them to a project",
    description="Any logged-in user: active users whose username or full name contains `q`, "
    "or the users with the given `ids` (comma-separated), with their names only.",
    opt={"permission": AUTHENTICATED},
)
async def user_directory(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    q: Annotated[str | None, QueryParameter(max_length=255)] = None,
    ids: Annotated[str | None, QueryParameter(max_length=100 * 37)] = None,
    limit: Limit = 20,
    after: After = None,
) -> Envelope[list[DirectoryEntry]]:
    await services.read_after(request, services.users.read_model, after)
    wanted: list[uuid.UUID] | None = None
    if ids is not None:
        try:
            wanted = [uuid.UUID(part) for part in ids.split(",") if part.strip()]
        except ValueError:
            raise RequestError(
                "ids must be comma-separated user ids (UUIDs)", field="ids"
            ) from None
    pattern = None
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
    async with services.pool.acquire() as connection:
        rows = await connection.fetch(
            _DIRECTORY.format(table=services.users.table), wanted, pattern, limit
        )
    return ok(
        [DirectoryEntry(id=r["id"], username=r["username"], full_name=r["full_name"]) for r in rows]
    )


@post("/", operation_id="CreateUser", summary="Create a user", opt={"permission": ADMIN})
async def create_user(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    data: JSONBody[UserCreate],
) -> Response[Any]:
    _check_password(data.password, data.username)
    context = await command_context(request)
    user_id = str(uuid.uuid4())
    password_hash = await hash_password_off_loop(data.password)

    async def claim(connection: asyncpg.Connection, _: AppendResult) -> None:
        await create_account(
            connection,
            user_id=user_id,
            username=data.username,
            email=data.email,
            password_hash=password_hash,
            system_role=data.system_role,
        )

    command = domain.RegisterUser(
        user_id=user_id,
        username=data.username,
        email=data.email,
        full_name=data.full_name,
        system_role=data.system_role,
    )
    result = await services.commands.handle(
        USERS, user_id, command, context, new_stream=True, in_transaction=claim
    )
    assert result.state is not None
    return write_response(result, user_out(result.state), status_code=201)


def _may_see(principal: Principal, user_id: uuid.UUID) -> None:
    if not principal.is_admin and principal.user_id != str(user_id):
        raise PermissionDeniedException("only admins may read or change other users")


@get(
    "/{user_id:uuid}",
    operation_id="GetUser",
    summary="Get a user",
    opt={"permission": AUTHENTICATED},
)
async def get_user(
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    user_id: FromPath[uuid.UUID],
    as_of: AsOfParameter = None,
) -> Envelope[UserOut]:
    _may_see(principal, user_id)
    past = parse_as_of(as_of)
    if past is not None:
        return await _user_as_of(services, str(user_id), past)
    user = await known_user(services, user_id)
    if user is None:
        raise domain.UserNotFoundError(str(user_id))
    return ok(user)


async def _user_as_of(services: Services, user_id: str, as_of: AsOf) -> Envelope[UserOut]:
    events = await past_events(services.store, domain.stream_id(user_id), as_of, f"user {user_id}")
    user = USERS.fold(events)
    if user is None:
        raise domain.UserNotFoundError(user_id)
    logins = [e.recorded_at for e in events if isinstance(e.event, domain.UserLoggedIn)]
    past = msgspec.structs.replace(user_out(user), last_login_at=logins[-1] if logins else None)
    return ok(past, as_of_meta(as_of, events))


@put(
    "/{user_id:uuid}",
    operation_id="UpdateUser",
    summary="Update a user",
    opt={"permission": AUTHENTICATED},
)
async def update_user(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    user_id: FromPath[uuid.UUID],
    data: JSONBody[UserUpdate],
) -> Response[Any]:
    _may_see(principal, user_id)
    if not principal.is_admin and (
        data.system_role is not msgspec.UNSET or data.active is not msgspec.UNSET
    ):
        raise PermissionDeniedException("only admins may change a role or deactivate a user")
    account = await services.accounts.by_id(str(user_id))
    if account is None:
        raise domain.UserNotFoundError(str(user_id))
    password_hash = None
    if isinstance(data.password, str):
        _check_password(data.password, account.username)
        changing_own = principal.user_id == str(user_id)
        if changing_own and not (
            isinstance(data.current_password, str)
            and await verify_password_off_loop(account.password_hash, data.current_password)
        ):
            raise RequestError(
                "current_password is missing or wrong", field="current_password", status_code=422
            )
        password_hash = await hash_password_off_loop(data.password)

    async def apply(connection: asyncpg.Connection, _: AppendResult) -> None:
        await update_account(
            connection,
            str(user_id),
            email=data.email if isinstance(data.email, str) else None,
            password_hash=password_hash,
            system_role=data.system_role if isinstance(data.system_role, str) else None,
            active=data.active if isinstance(data.active, bool) else None,
        )

    command = domain.UpdateUser(
        user_id=str(user_id),
        expected_version=if_match_version(request),
        email=data.email,
        full_name=data.full_name,
        system_role=data.system_role,
        active=data.active,
        password_changed=password_hash is not None,
    )
    result = await services.commands.handle(
        USERS,
        str(user_id),
        command,
        await command_context(request),
        retry_on_conflict=command.expected_version is None,
        in_transaction=apply,
    )
    user = result.state
    assert user is not None
    await services.standing.user_changed(user.user_id, user.active, user.system_role)
    if password_hash is not None or not user.active:
        await services.standing.sessions_ended(await services.accounts.session_ids(user.user_id))
    return write_response(result, user_out(user))


@get(
    "/{user_id:uuid}/history",
    operation_id="GetUserHistory",
    summary="A user's events, oldest first",
    opt={"permission": ADMIN},
)
async def user_history(
    services: NamedDependency[Services],
    user_id: FromPath[uuid.UUID],
    page: Page = 1,
    limit: Limit = 50,
) -> Envelope[list[HistoryEvent]]:
    return await history_page(
        services.store,
        domain.stream_id(str(user_id)),
        page,
        limit,
        missing=domain.UserNotFoundError(str(user_id)),
    )


def users_router() -> Router:
    return Router(
        path="/users",
        route_handlers=[
            list_users,
            user_directory,
            create_user,
            get_user,
            update_user,
            user_history,
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["users"],
    )
