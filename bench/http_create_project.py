"""`POST /api/v2/projects` through real HTTP against the event store's own append rate.

The API runs as a real uvicorn process on a scratch database; the load comes from `wrk` when it
is installed (C, nearly free on CPU, which matters when client and server share two cores) or
else from a minimal asyncio client over raw keep-alive HTTP/1.1 connections. The store side
does what the command does at its core, in this process: one ProjectCreated event per command
on a new stream with expected_version=0, from 8 concurrent writers. Rounds alternate.

    .venv/bin/python bench/http_create_project.py [--seconds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from aiplatform.bootstrap import ensure_admin
from aiplatform.config import Settings
from aiplatform.eventstore.store import EventStore, create_pool
from benchlib import (
    ADMIN_DATABASE_URL,
    METADATA,
    REDIS_URL,
    Command,
    median,
    new_stream_id,
    print_ratio,
    project_created,
    run_writers,
    scratch_database,
    warm_pool,
)

BENCH_DIR = Path(__file__).resolve().parent
PATH = "/api/v2/projects"
READY_TIMEOUT_S = 60.0
WARM_UP_S = 1
TARGET_RATIO = 0.3

_EVENT = project_created()
# The request body of the event the store side appends, so both sides write the same row.
BODY = json.dumps(
    {
        "name": _EVENT.name,
        "description": _EVENT.description,
        "config": _EVENT.config,
        "tags": _EVENT.tags,
    },
    separators=(",", ":"),
).encode()


@dataclass(frozen=True)
class HttpRound:
    requests_per_second: float
    p50_ms: float
    p99_ms: float


# The API server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(base_url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet, or a dependency not ready yet (503)
        time.sleep(0.2)
    raise RuntimeError(f"/ready did not answer 200 in {READY_TIMEOUT_S:g} s")


@contextmanager
def api_server(instance: str, database_url: str, redis_url: str) -> Iterator[str]:
    """A uvicorn process serving the API; yields its base URL. The access log is off: it is
    an operator's choice and would be measured as the server's cost."""
    port = free_port()
    env = {
        **os.environ,
        "AIPLATFORM_DATABASE_URL": database_url,
        "AIPLATFORM_REDIS_URL": redis_url,
        # Namespaces the server's Redis keys and queues, so they can be deleted afterwards.
        "AIPLATFORM_INSTANCE": instance,
        "AIPLATFORM_SECRET_KEY": SECRET_KEY,
    }
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", "http_app:create_app_from_env"),
        *("--app-dir", str(BENCH_DIR), "--host", "127.0.0.1", "--port", str(port)),
        *("--no-access-log", "--log-level", "warning"),
    ]
    with tempfile.NamedTemporaryFile(prefix="bench-api-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, server, log_path)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log_path.unlink(missing_ok=True)


SECRET_KEY = secrets.token_urlsafe(48)
ADMIN_PASSWORD = f"pw-{secrets.token_hex(8)}"


def admin_token(base_url: str, database_url: str) -> str:
    """Creates an admin in the scratch database and logs in: creating projects needs a user."""
    settings = Settings(database_url=database_url, secret_key=SECRET_KEY)
    asyncio.run(ensure_admin(settings, "bench", ADMIN_PASSWORD, "bench@example.com"))
    request = urllib.request.Request(
        f"{base_url}/api/v2/auth/token",
        data=json.dumps({"username": "bench", "password": ADMIN_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        token: str = json.loads(response.read())["data"]["access_token"]
    return token


def delete_redis_keys(redis_url: str, instance: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{instance}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# Load generators ----------------------------------------------------------------------------

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.body = [[{body}]]
"""
_WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_latency_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {percentile}% latency in wrk's output:\n{output}")
    return float(match.group(1)) * _WRK_UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> HttpRound:
    # A failed request must not count as a command: the rate would flatter the server.
    failures = re.search(r"Non-2xx or 3xx responses: \d+|Socket errors: .*", output)
    if failures is not None:
        raise RuntimeError(f"requests failed ({failures.group(0)}):\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{output}")
    return HttpRound(
        requests_per_second=float(rate.group(1)),
        p50_ms=_wrk_latency_ms(output, "50"),
        p99_ms=_wrk_latency_ms(output, "99"),
    )


async def wrk_round(url: str, connections: int, seconds: int, script: Path) -> HttpRound:
    # One thread is plenty for a C client at this rate, and leaves the cores to the server.
    process = await asyncio.create_subprocess_exec(
        *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"),
        *("-s", str(script), url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{output.decode()}")
    return parse_wrk(output.decode())


class RawHttpClient:
    """Keep-alive HTTP/1.1 POSTs over asyncio streams: no HTTP library, so that the client costs
    the server as little CPU as Python allows."""

    def __init__(self, host: str, port: int, body: bytes, token: str):
        self.host = host
        self.port = port
        self.request = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def _connection(self, deadline: float, latencies: list[float]) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 201"):
                    raise RuntimeError(f"the API answered {head.splitlines()[0]!r}")
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if length is None:
                    raise RuntimeError("a response without Content-Length")
                await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    async def round(self, connections: int, seconds: float) -> HttpRound:
        latencies: list[float] = []
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(self._connection(deadline, latencies) for _ in range(connections)))
        elapsed = time.perf_counter() - started
        latencies.sort()
        return HttpRound(
            requests_per_second=len(latencies) / elapsed,
            p50_ms=latencies[len(latencies) // 2] * 1000,
            p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        )


# The measurement ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    http: list[HttpRound]
    store: list[float]


def store_command(store: EventStore) -> Command:
    async def command() -> None:
        await store.append(new_stream_id(), [project_created()], METADATA, expected_version=0)

    return command


LoadGenerator = Callable[[int], Awaitable[HttpRound]]


@contextmanager
def load_generator(
    client: str, base_url: str, connections: int, token: str
) -> Iterator[LoadGenerator]:
    """A function that loads the API for a number of seconds and says how it went."""
    if client == "asyncio":
        host, port = base_url.removeprefix("http://").split(":")
        raw = RawHttpClient(host, int(port), BODY, token)
        yield lambda seconds: raw.round(connections, seconds)
        return
    with tempfile.NamedTemporaryFile("w", prefix="bench-", suffix=".lua", delete=False) as lua:
        lua.write(_WRK_SCRIPT.format(body=BODY.decode(), token=token))
    script = Path(lua.name)
    try:
        yield lambda seconds: wrk_round(f"{base_url}{PATH}", connections, seconds, script)
    finally:
        script.unlink(missing_ok=True)


async def measure(
    http_round: LoadGenerator, database_url: str, arguments: argparse.Namespace
) -> Results:
    pool = await create_pool(
        database_url, max_size=arguments.writers, application_name="aiplatform-bench"
    )
    try:
        await warm_pool(pool, arguments.writers)
        command = store_command(EventStore(pool))
        # Warm-up: the server opens its pool and prepares its statements; so does the store.
        await http_round(WARM_UP_S)
        await run_writers(command, arguments.writers, WARM_UP_S)
        http: list[HttpRound] = []
        store: list[float] = []
        for round_number in range(arguments.rounds):
            http_first = round_number % 2 == 1  # alternate, so neither side always goes first
            if http_first:
                http.append(await http_round(arguments.seconds))
            rate = await run_writers(command, arguments.writers, arguments.seconds)
            store.append(rate.per_second)
            if not http_first:
                http.append(await http_round(arguments.seconds))
        return Results(http=http, store=store)
    finally:
        await pool.close()


def report(results: Results, arguments: argparse.Namespace, client: str) -> None:
    http_rates = [r.requests_per_second for r in results.http]
    print(
        f"POST {PATH}: {arguments.connections} connections ({client}), store: "
        f"{arguments.writers} writers; median of {arguments.rounds} rounds of "
        f"{arguments.seconds:g} s"
    )
    print(f"{'':<24}{'commands/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    print(
        f"{'http POST':<24}{median(http_rates):>12,.0f}"
        f"{median([r.p50_ms for r in results.http]):>10.1f}"
        f"{median([r.p99_ms for r in results.http]):>10.1f}"
    )
    print(f"{'store append':<24}{median(results.store):>12,.0f}")
    print_ratio("http/store", http_rates, results.store, TARGET_RATIO)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Whole seconds: wrk takes no fractions, and both sides must run equally long.
    parser.add_argument("--seconds", type=int, default=3, help="length of one measurement")
    parser.add_argument("--connections", type=int, default=32, help="concurrent HTTP connections")
    parser.add_argument("--writers", type=int, default=8, help="concurrent store writers")
    parser.add_argument("--rounds", type=int, default=3, help="http/store pairs")
    parser.add_argument(
        "--client", choices=("auto", "wrk", "asyncio"), default="auto", help="auto: wrk if found"
    )
    parser.add_argument("--admin-url", default=ADMIN_DATABASE_URL, help="creates the scratch db")
    parser.add_argument("--redis-url", default=REDIS_URL)
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    client = arguments.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "asyncio"
    with scratch_database(arguments.admin_url) as (name, database_url):
        try:
            with api_server(name, database_url, arguments.redis_url) as base_url:
                token = admin_token(base_url, database_url)
                with load_generator(client, base_url, arguments.connections, token) as http_round:
                    results = asyncio.run(measure(http_round, database_url, arguments))
        finally:
            delete_redis_keys(arguments.redis_url, name)
    report(results, arguments, client)


if __name__ == "__main__":
    main()
