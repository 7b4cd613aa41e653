"""Every operation of the OpenAPI schema, called by five callers, answers as the permission its
route declares says it must:

- anonymous (no token), a viewer and a developer of project P, the owner of another project Q
  (no member of P), and an admin (no member of P either: P belongs to a sixth user);
- `public`: never 401/403; `authenticated`: anonymous 401, the others through; `admin:*`:
  anonymous 401, non-admins 403, the admin through; a project permission: anonymous 401, the
  owner of Q 404 (exactly like a project that does not exist), the viewer and the developer
  through when their built-in role grants it and 403 otherwise, the admin through. The project
  is P wherever it comes from: the path, a resource of P in the path (an experiment, a model, a
  dataset), the `project_id` query parameter, or the body.

"Through" means the guard let the call reach its handler: neither 401 nor 403 nor 404 (nor a
5xx). Calls that change things run on throwaway resources (a fresh copy of P or a fresh
experiment, model or dataset in P, a fresh login for logout), so no call can change what a
later one finds. Every mismatch is collected and listed.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import dramatiq
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from aiplatform.aggregates import JOBS
from aiplatform.auth.permissions import (
    ADMIN,
    AUTHENTICATED,
    BUILTIN_PROJECT_ROLES,
    DATASET_WRITE,
    INFERENCE_RUN,
    MODEL_WRITE,
    PROJECT_PERMISSIONS,
    PROJECT_READ,
    PUBLIC,
)
from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.config import Settings
from aiplatform.domain.jobs import SubmitJob
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.store import AppendResult, EventStore
from aiplatform.workers.broker import projector_wake_up
from aiplatform.workers.waker import GATE_TTL_MS, wake_gate_key
from conftest import ADMIN_PASSWORD, login

Client = AsyncTestClient[Litestar]

ANONYMOUS = "anonymous"
VIEWER = "viewer"
DEVELOPER = "developer"
OTHER_OWNER = "owner of Q"
ADMIN_CALLER = "admin"
CALLERS = (ANONYMOUS, VIEWER, DEVELOPER, OTHER_OWNER, ADMIN_CALLER)
# The built-in project role each member caller holds in P.
ROLE_IN_P = {VIEWER: "viewer", DEVELOPER: "developer"}

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
ALLOWED = "through"
# The messages of the guard's own 401s (guards.authenticate): a 401 from the login or refresh
# handler for bad credentials is an answer of the handler, one of these is the guard refusing.
GUARD_401_MESSAGES = ("authentication required", "access token is invalid", "session has ended")
# Public routes whose handler answers 401 for bad credentials.
CREDENTIAL_ROUTES = {"CreateToken", "RefreshToken"}
# `authenticated` routes whose handler lets a non-admin see only their own user: checked once
# more on another user's id, where only that user and the admin get through.
SELF_ONLY_USER_ROUTES = {"GetUser", "UpdateUser"}
# Multipart uploads (`opt["project_in"] = "form"`): the project is named in the form, which the
# guard cannot read, so their handler checks the declared permission; expected the same way.
HANDLER_CHECKED = {"RegisterModel": MODEL_WRITE, "CreateDataset": DATASET_WRITE}
# Routes whose project is optional or named by a job in the query string, where the guard does
# not look: their handler checks it too.
HANDLER_CHECKED |= {"ListJobs": PROJECT_READ, "GetLossCurve": PROJECT_READ}
# The project of an inference request is its model's, named in the body.
HANDLER_CHECKED |= {"Generate": INFERENCE_RUN}
# An operation that changes the resource in its path runs on a fresh one.
READ_METHODS = {"GET"}
RESOURCE_PARAMETERS = ("project_id", "experiment_id", "model_id", "dataset_id", "job_id")


@dataclass
class User:
    id: str
    username: str
    password: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    client: Client
    admin: User
    users: dict[str, User]
    p_owner: User
    project_p: str
    p_position: int
    # Jobs are submitted through the command handler (as the training worker writes them).
    commands: CommandHandler
    # A resource of each kind in P, for the calls that only read it.
    existing: dict[str, str] = field(default_factory=dict)
    # A notification of each caller's own (anonymous callers name the viewer's).
    notifications: dict[str, str] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    checked: int = 0

    def user(self, caller: str) -> User:
        return self.admin if caller == ADMIN_CALLER else self.users[caller]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    permission: str
    path_parameters: tuple[str, ...]
    query_parameters: tuple[str, ...]
    has_body: bool

    @property
    def resource_parameter(self) -> str | None:
        """The path parameter naming the resource the operation acts on, if any."""
        return next((p for p in self.path_parameters if p in RESOURCE_PARAMETERS), None)

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.operation_id}, {self.permission})"


# Request bodies: a minimal valid one per operation that takes one ---------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _user_body() -> dict[str, Any]:
    username = _unique("m")
    return {
        "username": username,
        "email": f"{username}@example.com",
        "password": f"pw-{uuid.uuid4().hex[:12]}",
    }


def safetensors_bytes() -> bytes:
    """A minimal safetensors file: an 8-byte header length, a JSON header, the tensor data."""
    data = struct.pack("<2f", 1.0, 2.0)
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, len(data)]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + data


def csv_bytes() -> bytes:
    return f"id,label\n1,{uuid.uuid4().hex}\n2,b\n".encode()


def model_form(world: World) -> dict[str, Any]:
    return {
        "data": {"project_id": world.project_p, "name": _unique("model-")},
        "files": {"file": ("w.safetensors", safetensors_bytes(), "application/octet-stream")},
    }


def dataset_form(world: World) -> dict[str, Any]:
    return {
        "data": {"project_id": world.project_p, "name": _unique("dataset ")},
        "files": {"file": ("d.csv", csv_bytes(), "text/csv")},
    }


# The request's body, as keyword arguments of `client.request`: `json=`, or `data=` and `files=`
# for a multipart upload.
Body = Callable[[World], dict[str, Any]]
BODIES: dict[str, Body] = {
    # Real credentials: a wrong password would count against the login rate limit.
    "CreateToken": lambda world: {
        "json": {"username": world.users[VIEWER].username, "password": world.users[VIEWER].password}
    },
    "RefreshToken": lambda _world: {"json": {"refresh_token": "not-a-refresh-token"}},
    "CreateProject": lambda _world: {"json": {"name": "permission matrix probe"}},
    "UpdateProject": lambda _world: {"json": {"description": "changed by the permission matrix"}},
    "GrantProjectMember": lambda world: {
        "json": {"user_id": world.users[VIEWER].id, "role": "developer"}
    },
    "CreateExperiment": lambda world: {
        "json": {"project_id": world.project_p, "name": _unique("experiment ")}
    },
    "UpdateExperiment": lambda _world: {"json": {"description": "changed by the matrix"}},
    "RegisterModel": model_form,
    "UpdateModel": lambda _world: {"json": {"stage": "staging"}},
    "CreateDataset": dataset_form,
    "CommitDatasetVersion": lambda _world: {"files": {"file": ("d.csv", csv_bytes(), "text/csv")}},
    "CreateUser": lambda _world: {"json": _user_body()},
    "UpdateUser": lambda _world: {"json": {"full_name": "Permission Matrix"}},
    # Refused by the handler (no such template) once the guard lets the caller through.
    "SubmitTrainingJob": lambda world: {
        "json": {
            "project_id": world.project_p,
            "template": "no-such-template",
            "dataset_id": "00000000-0000-4000-8000-000000000000",
        }
    },
    # A model of P, uploaded rather than trained: refused (422) once the handler lets one in.
    "Generate": lambda world: {"json": {"model_id": world.existing["model_id"], "prompt": "hi"}},
    "CreateRole": lambda _world: {
        "json": {"name": _unique("matrix-"), "permissions": ["project:read"]}
    },
}
# Values for path parameters that name no resource of P.
PATH_VALUES = {"version": "v1", "path": "openapi.yaml"}
# Query parameters the matrix fills in: `project_id` is P, `job_id` a job of P.
QUERY_VALUES = {"project_id", "job_id"}


# The operations and what each declares ------------------------------------------------------


def _openapi_path(route_path: str) -> str:
    """`/projects/{project_id:uuid}` as OpenAPI writes it: `/projects/{project_id}`."""
    return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route_path)


def declared_permissions(app: Litestar) -> dict[tuple[str, str], tuple[str | None, Any]]:
    """(OpenAPI path, METHOD) -> (the handler's operation_id, its opt["permission"])."""
    declared: dict[tuple[str, str], tuple[str | None, Any]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            operation_id = handler.operation_id if isinstance(handler.operation_id, str) else None
            for method in handler.http_methods:
                key = (_openapi_path(route.path), method.upper())
                declared[key] = (operation_id, handler.opt.get("permission"))
    return declared


def operations(schema: dict[str, Any], app: Litestar, problems: list[str]) -> list[Operation]:
    declared = declared_permissions(app)
    known = {PUBLIC, AUTHENTICATED, ADMIN, *PROJECT_PERMISSIONS}
    documented = {
        (path, method.upper()) for path, item in schema["paths"].items() for method in item
    }
    # Routes left out of the schema are checked for a declaration too (Litestar's automatic
    # OPTIONS handlers aside: they declare nothing and are refused, failing closed).
    for (path, method), (_, permission) in declared.items():
        if method != "OPTIONS" and (path, method) not in documented and permission not in known:
            problems.append(f"{method} {path} (not in the schema): declares {permission!r}")
    found: list[Operation] = []
    for path, item in schema["paths"].items():
        for method in HTTP_METHODS:
            spec = item.get(method)
            if spec is None:
                continue
            operation_id = spec.get("operationId", f"{method.upper()} {path}")
            handler_id, permission = declared.get((path, method.upper()), (None, None))
            where = f"{method.upper()} {path} ({operation_id})"
            if handler_id is not None and handler_id != operation_id:
                problems.append(f"{where}: the handler's operation_id is {handler_id}")
            if not isinstance(permission, str):
                problems.append(f"{where}: declares no permission")
                continue
            if permission not in known:
                problems.append(f"{where}: declares an unknown permission {permission!r}")
                continue
            parameters = [*item.get("parameters", []), *spec.get("parameters", [])]
            unfilled = [
                p["name"]
                for p in parameters
                if p["in"] == "query" and p.get("required") and p["name"] not in QUERY_VALUES
            ]
            if unfilled:
                problems.append(f"{where}: no value for required query parameters {unfilled}")
                continue
            has_body = "requestBody" in spec or operation_id in BODIES
            if has_body and operation_id not in BODIES:
                problems.append(f"{where}: takes a body, but BODIES has none for it")
                continue
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    operation_id=operation_id,
                    permission=permission,
                    path_parameters=tuple(p["name"] for p in parameters if p["in"] == "path"),
                    query_parameters=tuple(p["name"] for p in parameters if p["in"] == "query"),
                    has_body=has_body,
                )
            )
    return found


def expected(operation: Operation, caller: str) -> str | int:
    """ALLOWED, or the status the guard (or, for HANDLER_CHECKED, the handler) must answer."""
    permission = HANDLER_CHECKED.get(operation.operation_id, operation.permission)
    if permission == PUBLIC:
        return ALLOWED
    if caller == ANONYMOUS:
        return 401
    if permission == AUTHENTICATED or caller == ADMIN_CALLER:
        return ALLOWED
    if permission == ADMIN:
        return 403
    if caller == OTHER_OWNER:
        return 404
    return ALLOWED if permission in BUILTIN_PROJECT_ROLES[ROLE_IN_P[caller]] else 403


_CODES = {401: "not_authenticated", 403: "forbidden", 404: "not_found"}


def verdict(operation: Operation, want: str | int, status: int, body: Any) -> str | None:
    """None when the answer is the expected one, else what is wrong with it."""
    error = body.get("error") if isinstance(body, dict) else None
    meta = body.get("meta") if isinstance(body, dict) else None
    code = meta.get("code") if isinstance(meta, dict) else None
    got = f"got {status} {code or ''} {error or ''}".rstrip()
    if status >= 500:
        return f"expected {want}, {got}"
    if want == ALLOWED:
        if status == 401 and operation.operation_id in CREDENTIAL_ROUTES:
            guard_said_it = any(m in str(error) for m in GUARD_401_MESSAGES)
            if code == "not_authenticated" and not guard_said_it:
                return None
        if status in (401, 403) or (status == 404 and operation.permission != PUBLIC):
            return f"expected the call to get through the guard, {got}"
        return None
    if status != want or code != _CODES[int(want)]:
        return f"expected {want} {_CODES[int(want)]}, {got}"
    return None


# Setting up the callers and the projects ----------------------------------------------------


async def create_user(client: Client, admin_headers: dict[str, str]) -> User:
    body = _user_body()
    response = await client.post("/api/v2/users", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    user = User(
        id=response.json()["data"]["id"], username=body["username"], password=body["password"]
    )
    user.headers = await login(client, user.username, user.password)
    return user


async def create_project(client: Client, owner: User, members: dict[str, str]) -> tuple[str, int]:
    """A project of `owner` with these members (user id -> role); (its id, the position of
    its last event)."""
    response = await client.post(
        "/api/v2/projects", json={"name": _unique("matrix ")}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    project_id = response.json()["data"]["id"]
    position = response.json()["meta"]["position"]
    for user_id, role in members.items():
        response = await client.post(
            f"/api/v2/projects/{project_id}/members",
            json={"user_id": user_id, "role": role},
            headers=owner.headers,
        )
        assert response.status_code == 200, response.text
        position = response.json()["meta"]["position"]
    return project_id, position


async def created(client: Client, owner: User, url: str, body: dict[str, Any]) -> str:
    response = await client.post(url, headers=owner.headers, **body)
    assert response.status_code == 201, response.text
    resource_id: str = response.json()["data"]["id"]
    return resource_id


async def new_resource(world: World, parameter: str) -> tuple[str, int | None]:
    """A fresh resource of P (a copy of P for `project_id`), made by P's owner; (its id, the
    position of its last event, where known)."""
    client, owner = world.client, world.p_owner
    if parameter == "project_id":
        return await create_project(client, owner, p_members(world))
    if parameter == "experiment_id":
        body = BODIES["CreateExperiment"](world)
        return await created(client, owner, "/api/v2/experiments", body), None
    if parameter == "model_id":
        return await created(client, owner, "/api/v2/models", model_form(world)), None
    if parameter == "job_id":
        return await submitted_job(world), None
    assert parameter == "dataset_id", parameter
    return await created(client, owner, "/api/v2/datasets", dataset_form(world)), None


async def submitted_job(world: World) -> str:
    """A training job of P, submitted by P's owner through the command handler."""
    job_id = str(uuid.uuid4())
    command = SubmitJob(
        job_id=job_id,
        project_id=world.project_p,
        name=_unique("job-"),
        template="tabular-classifier",
        dataset_id=world.existing["dataset_id"],
        dataset_version="v1",
        base_model_id=None,
        hyperparameters={},
    )
    context = CommandContext(metadata=EventMetadata(actor=world.p_owner.id))
    await world.commands.handle(JOBS, job_id, command, context, new_stream=True)
    return job_id


@pytest.fixture
async def job_commands(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[CommandHandler]:
    """The command handler jobs are submitted through; appends wake the projector through the
    API's gate."""
    cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))

    async def wake_projector(_: AppendResult) -> None:
        if await cache.set_if_absent(wake_gate_key(cache), GATE_TTL_MS):
            await asyncio.to_thread(dramatiq.get_broker().enqueue, projector_wake_up())

    yield CommandHandler(EventStore(pool), listeners=[wake_projector])
    await cache.close()


async def make_world(client: Client, admin_id: str, commands: CommandHandler) -> World:
    admin_headers = await login(client, "root", ADMIN_PASSWORD)
    admin = User(id=admin_id, username="root", password=ADMIN_PASSWORD, headers=admin_headers)
    users = {
        caller: await create_user(client, admin_headers)
        for caller in (VIEWER, DEVELOPER, OTHER_OWNER)
    }
    p_owner = await create_user(client, admin_headers)
    await create_project(client, users[OTHER_OWNER], {})  # Q
    world = World(
        client=client,
        admin=admin,
        users=users,
        p_owner=p_owner,
        project_p="",
        p_position=0,
        commands=commands,
    )
    world.project_p, world.p_position = await create_project(client, p_owner, p_members(world))
    world.existing["project_id"] = world.project_p
    for parameter in RESOURCE_PARAMETERS[1:]:
        world.existing[parameter], _ = await new_resource(world, parameter)
    # A custom role for `roles/{name}`: built-in ones have no history to read.
    role = await client.post(
        "/api/v2/roles", json=BODIES["CreateRole"](world)["json"], headers=admin_headers
    )
    assert role.status_code == 201, role.text
    world.existing["name"] = role.json()["data"]["name"]
    await notify_every_caller(world)
    return world


async def notify_every_caller(world: World) -> None:
    """The members of P were told they were added; the others are added to a project R."""
    others = {world.users[OTHER_OWNER].id: "viewer", world.admin.id: "viewer"}
    _, position = await create_project(world.client, world.p_owner, others)
    for caller in CALLERS[1:]:
        listed: list[dict[str, Any]] = []
        for _ in range(3):  # each try waits up to the read-your-writes timeout
            response = await world.client.get(
                "/api/v2/notifications",
                params={"after": position},
                headers=world.user(caller).headers,
            )
            assert response.status_code == 200, response.text
            listed = response.json()["data"]
            if not response.json()["meta"].get("stale"):
                break
        assert listed, f"{caller} has no notification"
        world.notifications[caller] = listed[0]["id"]


def p_members(world: World) -> dict[str, str]:
    return {world.users[caller].id: role for caller, role in ROLE_IN_P.items()}


# Calling ------------------------------------------------------------------------------------


async def call(
    world: World, operation: Operation, caller: str, user_id_override: str | None = None
) -> None:
    client = world.client
    headers: dict[str, str] = {}
    if caller != ANONYMOUS:
        user = world.user(caller)
        headers = user.headers
        if operation.operation_id == "Logout":  # ends the session: log in afresh for it
            headers = await login(client, user.username, user.password)
    resource = operation.resource_parameter
    position: int | None = world.p_position
    values: dict[str, str] = {}
    if resource is not None and operation.method not in READ_METHODS:
        values[resource], position = await new_resource(world, resource)
    for name in operation.path_parameters:
        if name in values:
            continue
        if name in world.existing:
            values[name] = world.existing[name]
        elif name == "user_id" and resource == "project_id":
            values[name] = world.users[VIEWER].id  # a member of the project
        elif name == "user_id":
            own = world.users[VIEWER] if caller == ANONYMOUS else world.user(caller)
            values[name] = user_id_override or own.id
        elif name == "notification_id":
            values[name] = world.notifications[VIEWER if caller == ANONYMOUS else caller]
        elif name in PATH_VALUES:
            values[name] = PATH_VALUES[name]
        else:
            world.mismatches.append(f"{operation}: no value for path parameter {name!r}")
            return
    url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], operation.path)
    params: dict[str, str] = {}
    if "project_id" in operation.query_parameters:
        params["project_id"] = world.project_p
    if "job_id" in operation.query_parameters:
        params["job_id"] = world.existing["job_id"]
    # Read-your-writes on P's own read model; another read model's wait would time out.
    if "after" in operation.query_parameters and resource == "project_id" and position:
        params["after"] = str(position)
    body = BODIES[operation.operation_id](world) if operation.has_body else {}
    response = await client.request(operation.method, url, params=params, headers=headers, **body)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    want = expected(operation, caller)
    if user_id_override is not None and caller not in (VIEWER, ADMIN_CALLER, ANONYMOUS):
        want = 403  # another user's account: only its owner and admins
    world.checked += 1
    problem = verdict(operation, want, response.status_code, answer)
    if problem is not None:
        on = f" on user {user_id_override}" if user_id_override else ""
        world.mismatches.append(f"{caller:<10} {operation}{on}: {problem}")


async def test_every_operation_answers_each_caller_as_its_declared_permission_says(
    anonymous: Client, admin_id: str, job_commands: CommandHandler
) -> None:
    response = await anonymous.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    problems: list[str] = []
    found = operations(response.json(), anonymous.app, problems)
    assert not problems, "operations the matrix cannot check:\n" + "\n".join(problems)
    assert len(found) >= 20, found

    world = await make_world(anonymous, admin_id, job_commands)
    for operation in found:
        for caller in CALLERS:
            await call(world, operation, caller)
        if operation.operation_id in SELF_ONLY_USER_ROUTES:
            for caller in CALLERS:
                await call(world, operation, caller, user_id_override=world.users[VIEWER].id)

    assert world.checked >= len(found) * len(CALLERS)
    # Nothing the matrix did (logouts, deletions) ended a session or a membership it relied on.
    for caller in CALLERS[1:]:
        me = await anonymous.get("/api/v2/auth/me", headers=world.user(caller).headers)
        assert me.status_code == 200, f"{caller}: {me.text}"
    project = await anonymous.get(
        f"/api/v2/projects/{world.project_p}", headers=world.users[VIEWER].headers
    )
    assert project.status_code == 200, project.text
    assert not world.mismatches, (
        f"{len(world.mismatches)} of {world.checked} calls answered wrongly:\n"
        + "\n".join(world.mismatches)
    )
