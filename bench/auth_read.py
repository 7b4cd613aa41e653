"""What authentication costs: logging in, and an authenticated read against the same read
without authentication.

(a) `POST /api/v2/auth/token` with valid credentials: requests/s and latency through real HTTP;
    for reference, one Argon2id verify in this process (the work every login does); and the
    latency of authenticated reads while logins run, since the verify runs on the event loop.
(b) `GET /api/v2/projects/{id}` with a bearer token (the guard decodes the JWT, asks Redis for
    the session's standing, reads the project and checks the caller's role in it) against
    `GET /api/v2/bench/projects/{id}`, a public route this module adds to the same app that
    serves the same project the same way (read-your-writes wait, the cached read model, the
    same envelope and ETag): the difference is authentication and authorisation alone. One
    uvicorn process serves both; the rounds alternate and the ratio is the median of the
    per-round ratios `authenticated/unauthenticated`. The target is >= 0.8.
    `--breakdown` adds two more public copies that do part of the guard's work: decoding the
    JWT only, and `authenticate()` (JWT and the standing lookup in Redis) only.

The load comes from `wrk` when installed, else from a minimal asyncio HTTP/1.1 client.

    .venv/bin/python bench/auth_read.py [--seconds 3] [--connections 32] [--rounds 5] \
        [--breakdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from aiplatform.api.app import create_app
from aiplatform.api.envelope import Envelope, ok
from aiplatform.api.guards import authenticate
from aiplatform.api.projects import After
from aiplatform.api.services import Services
from aiplatform.auth.passwords import hash_password, verify_password
from aiplatform.auth.permissions import PUBLIC
from aiplatform.auth.tokens import decode_access_token
from aiplatform.bootstrap import ensure_admin
from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.config import load_settings
from aiplatform.domain.projects import ProjectNotFoundError
from aiplatform.eventstore.store import create_pool
from aiplatform.projectors.registry import all_projectors
from aiplatform.projectors.runner import catch_up
from aiplatform.queries.projects import ProjectView
from benchlib import (
    ADMIN_DATABASE_URL,
    REDIS_URL,
    median,
    paired_ratio,
    print_ratio,
    scratch_database,
)
from http_create_project import (
    HttpRound,
    delete_redis_keys,
    free_port,
    parse_wrk,
    wait_until_ready,
)

BENCH_DIR = Path(__file__).resolve().parent
TARGET_RATIO = 0.8
WARM_UP_S = 1
LOGIN_USERS = 8  # logins rotate over these, so that concurrent logins rarely hit one stream
ADMIN_USERNAME = "bench-admin"
PUBLIC_PATH = "/api/v2/bench/projects/{project_id}"
JWT_ONLY_PATH = "/api/v2/bench/jwt-only/projects/{project_id}"
AUTHENTICATE_ONLY_PATH = "/api/v2/bench/authenticate-only/projects/{project_id}"


# The server: the API plus public copies of GetProject -------------------------------------


async def _serve_project(
    request: Request[Any, Any, State], project_id: uuid.UUID, after: int | None
) -> Response[Envelope[ProjectView]]:
    """What `GetProject`'s guard and handler do for an authorised caller, without the
    authentication and the membership check."""
    services: Services = request.app.state.services
    waited = await services.read_after(request, services.projects.read_model, after)
    project = await services.projects.get(project_id, fresh=waited is not None)
    if project is None:
        raise ProjectNotFoundError(str(project_id))
    meta = {"stale": True} if waited is False else None
    return Response(ok(project, meta), headers={"ETag": f'"{project.version}"'})


@get(
    PUBLIC_PATH.replace("{project_id}", "{project_id:uuid}"),
    operation_id="BenchGetProjectWithoutAuthentication",
    opt={"permission": PUBLIC},
    include_in_schema=False,
)
async def get_project_without_authentication(
    request: Request[Any, Any, State], project_id: FromPath[uuid.UUID], after: After = None
) -> Response[Envelope[ProjectView]]:
    return await _serve_project(request, project_id, after)


@get(
    JWT_ONLY_PATH.replace("{project_id}", "{project_id:uuid}"),
    operation_id="BenchGetProjectJwtOnly",
    opt={"permission": PUBLIC},
    include_in_schema=False,
)
async def get_project_jwt_only(
    request: Request[Any, Any, State], project_id: FromPath[uuid.UUID], after: After = None
) -> Response[Envelope[ProjectView]]:
    """The public read plus the guard's JWT check (`decode_access_token`), nothing else."""
    services: Services = request.app.state.services
    token = request.headers.get("authorization", "").partition(" ")[2]
    decode_access_token(services.settings.require_secret_key(), token.strip())
    return await _serve_project(request, project_id, after)


@get(
    AUTHENTICATE_ONLY_PATH.replace("{project_id}", "{project_id:uuid}"),
    operation_id="BenchGetProjectAuthenticateOnly",
    opt={"permission": PUBLIC},
    include_in_schema=False,
)
async def get_project_authenticate_only(
    request: Request[Any, Any, State], project_id: FromPath[uuid.UUID], after: After = None
) -> Response[Envelope[ProjectView]]:
    """The public read plus the guard's `authenticate()`: the JWT and the session's standing
    (one Redis MGET); no membership check."""
    await authenticate(request)
    return await _serve_project(request, project_id, after)


def create_app_from_env() -> Litestar:
    """`uvicorn --factory auth_read:create_app_from_env --app-dir bench`: the API, plus the
    public copies of GetProject."""
    app: Litestar = create_app(load_settings())
    for handler in (
        get_project_without_authentication,
        get_project_jwt_only,
        get_project_authenticate_only,
    ):
        app.register(handler)
    return app


@contextmanager
def api_server(env: dict[str, str]) -> Iterator[str]:
    """A uvicorn process serving `create_app_from_env`; yields its base URL. Access log off."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", "auth_read:create_app_from_env"),
        *("--app-dir", str(BENCH_DIR), "--host", "127.0.0.1", "--port", str(port)),
        *("--no-access-log", "--log-level", "warning"),
    ]
    with tempfile.NamedTemporaryFile(prefix="bench-api-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        server = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, server, log_path)
        print(f"server pid {server.pid} ({base_url})", flush=True)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log_path.unlink(missing_ok=True)


# Setting up: an admin, users who log in, a project to read ----------------------------------


@dataclass(frozen=True)
class Fixture:
    project_id: str
    access_token: str  # of the project's owner, a user without the admin role
    logins: list[dict[str, str]]  # credentials to log in with


def _http_json(method: str, url: str, body: Any = None, token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _token(base_url: str, username: str, password: str) -> str:
    answer = _http_json(
        "POST", f"{base_url}/api/v2/auth/token", {"username": username, "password": password}
    )
    token: str = answer["data"]["access_token"]
    return token


def set_up(base_url: str, env: dict[str, str], admin_password: str) -> Fixture:
    admin_token = _token(base_url, ADMIN_USERNAME, admin_password)
    logins = []
    for _ in range(LOGIN_USERS):
        username = f"bench{uuid.uuid4().hex[:8]}"
        password = f"pw-{secrets.token_hex(8)}"
        _http_json(
            "POST",
            f"{base_url}/api/v2/users",
            {"username": username, "email": f"{username}@example.com", "password": password},
            admin_token,
        )
        logins.append({"username": username, "password": password})
    owner_token = _token(base_url, logins[0]["username"], logins[0]["password"])
    created = _http_json(
        "POST",
        f"{base_url}/api/v2/projects",
        {
            "name": "bench project",
            "description": "read by the authentication benchmark",
            "config": {"framework": "pytorch", "gpus": 1},
            "tags": ["bench"],
        },
        owner_token,
    )
    asyncio.run(project_read_models(env))
    return Fixture(project_id=created["data"]["id"], access_token=owner_token, logins=logins)


async def project_read_models(env: dict[str, str]) -> None:
    """No projector worker runs: the read models are caught up once, here, after the writes."""
    settings = load_settings(env)
    pool = await create_pool(settings.require_database_url(), max_size=2)
    cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))
    try:
        for projector in all_projectors():
            await catch_up(pool, projector, cache)
    finally:
        await cache.close()
        await pool.close()


# Load generators ----------------------------------------------------------------------------

_WRK_GET = """
wrk.method = "GET"
{headers}
"""
# Each request logs in the next of the users, round robin.
_WRK_LOGIN = """
local bodies = {{ {bodies} }}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
"""


@dataclass(frozen=True)
class Load:
    """One kind of request: what wrk runs, and the same for the asyncio client."""

    name: str
    method: str
    path: str
    headers: dict[str, str]
    bodies: list[bytes]
    lua: str


def get_load(name: str, path: str, token: str | None) -> Load:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    lua_headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return Load(name, "GET", path, headers, [b""], _WRK_GET.format(headers=lua_headers))


def login_load(logins: list[dict[str, str]]) -> Load:
    bodies = [json.dumps(c, separators=(",", ":")).encode() for c in logins]
    lua = _WRK_LOGIN.format(bodies=", ".join(f"[[{b.decode()}]]" for b in bodies))
    headers = {"Content-Type": "application/json"}
    return Load("login", "POST", "/api/v2/auth/token", headers, bodies, lua)


async def wrk_round(
    base_url: str, load: Load, script: Path, connections: int, seconds: int
) -> HttpRound:
    # One thread: a C client at these rates needs no more, and leaves the cores to the server.
    # --timeout: a login queued behind others must not count as a socket error.
    process = await asyncio.create_subprocess_exec(
        *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"),
        *("-s", str(script), f"{base_url}{load.path}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{output.decode()}")
    return parse_wrk(output.decode())


async def asyncio_round(base_url: str, load: Load, connections: int, seconds: int) -> HttpRound:
    """Keep-alive HTTP/1.1 over asyncio streams, no HTTP library: the cheapest Python client."""
    host, port = base_url.removeprefix("http://").split(":")
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def connection(first: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        n = first
        try:
            while time.perf_counter() < deadline:
                body = load.bodies[n % len(load.bodies)]
                n += 1
                head = f"{load.method} {load.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in load.headers.items())
                request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
                sent = time.perf_counter()
                writer.write(request)
                answer = await reader.readuntil(b"\r\n\r\n")
                if not answer.startswith(b"HTTP/1.1 2"):
                    raise RuntimeError(f"the API answered {answer.splitlines()[0]!r}")
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", answer)
                if length is None:
                    raise RuntimeError("a response without Content-Length")
                await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - sent)
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return HttpRound(
        requests_per_second=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


Runner = Callable[[Load, int, int], Awaitable[HttpRound]]


@contextmanager
def runner(client: str, base_url: str, loads: list[Load]) -> Iterator[Runner]:
    """Runs a load for a number of seconds over a number of connections."""
    if client == "asyncio":
        yield lambda load, connections, seconds: asyncio_round(base_url, load, connections, seconds)
        return
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as directory:
        scripts = {load.name: Path(directory) / f"{load.name}.lua" for load in loads}
        for load in loads:
            scripts[load.name].write_text(load.lua)
        yield lambda load, connections, seconds: wrk_round(
            base_url, load, scripts[load.name], connections, seconds
        )


# The measurement ----------------------------------------------------------------------------


def time_verify(repeats: int) -> tuple[list[float], str]:
    """One Argon2id verify of a right password, in this process, in ms; and the parameters of
    the hash (those the server uses: the same `hash_password`)."""
    password = f"pw-{secrets.token_hex(8)}"
    password_hash = hash_password(password)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        assert verify_password(password_hash, password)
        timings.append((time.perf_counter() - started) * 1000)
    p = argon2.extract_parameters(password_hash)
    return timings, f"t={p.time_cost}, m={p.memory_cost} KiB, p={p.parallelism}"


AUTHENTICATED = "GET project, token"
UNAUTHENTICATED = "GET project, no auth"
JWT_ONLY = "  no auth + JWT decode"
AUTHENTICATE_ONLY = "  no auth + authenticate()"
LOGIN = "POST auth/token"
READ_DURING_LOGINS = "GET project, token, during logins"


def loads(fixture: Fixture) -> dict[str, Load]:
    project = fixture.project_id
    return {
        AUTHENTICATED: get_load(
            "authenticated", f"/api/v2/projects/{project}", fixture.access_token
        ),
        UNAUTHENTICATED: get_load("unauthenticated", PUBLIC_PATH.format(project_id=project), None),
        JWT_ONLY: get_load(
            "jwt-only", JWT_ONLY_PATH.format(project_id=project), fixture.access_token
        ),
        AUTHENTICATE_ONLY: get_load(
            "authenticate-only",
            AUTHENTICATE_ONLY_PATH.format(project_id=project),
            fixture.access_token,
        ),
        LOGIN: login_load(fixture.logins),
    }


@dataclass
class Results:
    rounds: dict[str, list[HttpRound]]
    verify_ms: list[float]
    verify_parameters: str


async def measure(
    run: Runner, all_loads: dict[str, Load], arguments: argparse.Namespace
) -> Results:
    reads = [AUTHENTICATED, UNAUTHENTICATED]
    if arguments.breakdown:
        reads += [JWT_ONLY, AUTHENTICATE_ONLY]
    # Warm-up: the pool's connections, the cached project and standing, prepared statements.
    for name in reads:
        await run(all_loads[name], arguments.connections, WARM_UP_S)
    await run(all_loads[LOGIN], arguments.login_connections, WARM_UP_S)

    rounds: dict[str, list[HttpRound]] = {name: [] for name in [*reads, LOGIN]}
    for round_number in range(arguments.rounds):
        # Rotate the order, so that no variant always runs first.
        shift = round_number % len(reads)
        for name in reads[shift:] + reads[:shift]:
            rounds[name].append(
                await run(all_loads[name], arguments.connections, arguments.seconds)
            )
    for _ in range(arguments.login_rounds):
        login = await run(all_loads[LOGIN], arguments.login_connections, arguments.login_seconds)
        rounds[LOGIN].append(login)
    # Reads while logins run alongside: how long a login holds up everyone else.
    read, _ = await asyncio.gather(
        run(all_loads[AUTHENTICATED], arguments.connections, arguments.login_seconds),
        run(all_loads[LOGIN], arguments.login_connections, arguments.login_seconds),
    )
    rounds[READ_DURING_LOGINS] = [read]
    verify_ms, parameters = time_verify(arguments.verifies)
    return Results(rounds=rounds, verify_ms=verify_ms, verify_parameters=parameters)


def _row(name: str, rounds: list[HttpRound], baseline: list[HttpRound] | None = None) -> str:
    rate = median([r.requests_per_second for r in rounds])
    p50 = median([r.p50_ms for r in rounds])
    p99 = median([r.p99_ms for r in rounds])
    row = f"{name:<36}{rate:>12,.1f}{p50:>10.1f}{p99:>10.1f}"
    if baseline is not None:
        ratio = paired_ratio(
            [r.requests_per_second for r in rounds], [r.requests_per_second for r in baseline]
        )
        row += f"{ratio:>10.2f}"
    return row


def report(results: Results, arguments: argparse.Namespace, client: str) -> None:
    rounds = results.rounds
    verify = statistics.median(results.verify_ms)
    print(
        f"({client}; GETs: {arguments.connections} connections, median of {arguments.rounds} "
        f"rounds of {arguments.seconds} s; logins: {arguments.login_connections} connections, "
        f"median of {arguments.login_rounds} rounds of {arguments.login_seconds} s)"
    )
    print(f"{'':<36}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'ratio':>10}")
    print(_row(LOGIN, rounds[LOGIN]))
    print(_row(READ_DURING_LOGINS, rounds[READ_DURING_LOGINS]))
    baseline = rounds[UNAUTHENTICATED]
    print(_row(UNAUTHENTICATED, baseline, baseline))
    for name in (JWT_ONLY, AUTHENTICATE_ONLY):
        if name in rounds:
            print(_row(name, rounds[name], baseline))
    print(_row(AUTHENTICATED, rounds[AUTHENTICATED], baseline))
    print(
        f"argon2id verify in-process: {verify:.1f} ms, median of {arguments.verifies} "
        f"(min {min(results.verify_ms):.1f}; {results.verify_parameters}): at most "
        f"{1000 / verify:.1f} logins/s for one event loop"
    )
    with_auth = [r.requests_per_second for r in rounds[AUTHENTICATED]]
    without = [r.requests_per_second for r in baseline]
    print_ratio("authenticated/unauthenticated", with_auth, without, TARGET_RATIO)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="length of one measurement")
    parser.add_argument("--connections", type=int, default=32, help="connections for the GETs")
    parser.add_argument("--rounds", type=int, default=5, help="authenticated/public GET pairs")
    parser.add_argument("--login-connections", type=int, default=4, help="for the logins")
    parser.add_argument("--login-rounds", type=int, default=2, help="login measurements")
    parser.add_argument("--login-seconds", type=int, default=5, help="length of one of them")
    parser.add_argument("--verifies", type=int, default=20, help="in-process argon2 verifies")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also measure public reads that do part of the guard's work",
    )
    parser.add_argument(
        "--client", choices=("auto", "wrk", "asyncio"), default="auto", help="auto: wrk if found"
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=0,
        help="after setting up, wait this many seconds before measuring (to attach py-spy)",
    )
    parser.add_argument("--admin-url", default=ADMIN_DATABASE_URL, help="creates the scratch db")
    parser.add_argument("--redis-url", default=REDIS_URL)
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    client = arguments.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "asyncio"
    admin_password = f"pw-{secrets.token_hex(12)}"
    with scratch_database(arguments.admin_url) as (name, database_url):
        env = {
            "AIPLATFORM_DATABASE_URL": database_url,
            "AIPLATFORM_REDIS_URL": arguments.redis_url,
            # Namespaces the server's Redis keys and queues, so they can be deleted afterwards.
            "AIPLATFORM_INSTANCE": name,
            "AIPLATFORM_SECRET_KEY": secrets.token_urlsafe(48),
        }
        try:
            settings = load_settings(env)
            asyncio.run(ensure_admin(settings, ADMIN_USERNAME, admin_password, "bench@example.com"))
            with api_server(env) as base_url:
                fixture = set_up(base_url, env, admin_password)
                if arguments.hold:
                    time.sleep(arguments.hold)
                all_loads = loads(fixture)
                with runner(client, base_url, list(all_loads.values())) as run:
                    results = asyncio.run(measure(run, all_loads, arguments))
        finally:
            delete_redis_keys(arguments.redis_url, name)
    report(results, arguments, client)


if __name__ == "__main__":
    main()
