"""What the benchmarks share: a scratch database, the event they append, timed writer loops and
the statistics that keep a noisy machine from favouring one side of a comparison."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg

from aiplatform.domain.projects import ProjectCreated
from aiplatform.eventstore.codec import Event, EventMetadata
from aiplatform.eventstore.migrations import upgrade_to_head

# The same variables the test suite reads, so one setting points both at the same servers.
ADMIN_DATABASE_URL = os.environ.get(
    "AIPLATFORM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("AIPLATFORM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Who appends: the metadata a real HTTP command carries (see api/context.py), so that the
# stored rows have a realistic size.
METADATA = EventMetadata(
    actor="anonymous",
    client_ip="127.0.0.1",
    user_agent="aiplatform-bench/1",
    request_id=uuid.uuid4().hex,
)

Command = Callable[[], Awaitable[None]]


def database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


async def _admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _exit_on_sigterm() -> None:
    """SIGTERM (a CI timeout, `kill`) becomes SystemExit, so the scratch database is still
    dropped by the `finally` below instead of being left behind."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))


@contextmanager
def scratch_database(admin_url: str = ADMIN_DATABASE_URL) -> Iterator[tuple[str, str]]:
    """A freshly migrated database `aiplatform_bench_<random>`, dropped on the way out whatever
    happened. Yields (name, url). Call outside a running event loop: migrating blocks."""
    _exit_on_sigterm()
    name = f"aiplatform_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        url = database_url(admin_url, name)
        upgrade_to_head(url)
        yield name, url
    finally:
        # FORCE: a server process or pool we failed to stop must not keep the database alive.
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def project_created(project_id: str | None = None) -> ProjectCreated:
    """The event of a "create project" command, with the payload `POST /api/v2/projects` of
    the HTTP benchmark produces."""
    return ProjectCreated(
        project_id=project_id or str(uuid.uuid4()),
        name="bench project",
        description="a project created by the append benchmark",
        config={"framework": "pytorch", "gpus": 1},
        tags=["bench"],
        owner_id=METADATA.actor,
    )


def new_stream_id() -> str:
    return f"project-{uuid.uuid4()}"


def make_events(count: int) -> list[Event]:
    return [project_created() for _ in range(count)]


@dataclass(frozen=True)
class Rate:
    commands: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.commands / self.seconds


async def run_writers(command: Command, writers: int, seconds: float) -> Rate:
    """`writers` tasks issue `command` back to back until `seconds` have passed. The rate counts
    from the start until the last in-flight command returned, so it is never flattered."""
    deadline = time.perf_counter() + seconds

    async def writer() -> int:
        done = 0
        while time.perf_counter() < deadline:
            await command()
            done += 1
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(writer() for _ in range(writers)))
    return Rate(commands=sum(counts), seconds=time.perf_counter() - started)


async def warm_pool(pool: asyncpg.Pool, size: int) -> None:
    """Opens every connection before timing: connecting is not what is measured."""
    connections = [await pool.acquire() for _ in range(size)]
    for connection in connections:
        await pool.release(connection)


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of per-round ratios: each round's two sides ran back to back, so a slow
    moment of the machine hits both sides of one ratio rather than one side of the median."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def print_ratio(
    label: str, numerators: list[float], denominators: list[float], target: float
) -> None:
    """The benchmark's verdict line: the median per-round ratio, each round's, the target."""
    ratio = paired_ratio(numerators, denominators)
    per_round = ", ".join(f"{n / d:.2f}" for n, d in zip(numerators, denominators, strict=True))
    verdict = "meets" if ratio >= target else "MISSES"
    print(f"RATIO {label}: {ratio:.2f} (per round: {per_round}); {verdict} the target of {target}")
