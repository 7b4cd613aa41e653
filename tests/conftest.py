"""Fixtures: every test run gets its own PostgreSQL database and its own Redis namespace on the
real servers, migrated once; a real Dramatiq worker runs the projector in this process."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import redis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.config import Settings, load_settings
from aiplatform.eventstore.migrations import upgrade_to_head

ADMIN_DATABASE_URL = os.environ.get(
    "AIPLATFORM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("AIPLATFORM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _database_url(name: str) -> str:
    base, _, _ = ADMIN_DATABASE_URL.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def database_name() -> Iterator[str]:
    name = f"aiplatform_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    upgrade_to_head(_database_url(name))
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings(database_name: str) -> Iterator[Settings]:
    """The run's settings, also exported to the environment, where worker processes and the
    in-process Dramatiq worker read them."""
    env = {
        "AIPLATFORM_DATABASE_URL": _database_url(database_name),
        "AIPLATFORM_REDIS_URL": REDIS_URL,
        "AIPLATFORM_INSTANCE": database_name,
        "AIPLATFORM_SECRET_KEY": "test-secret-" + "k" * 40,
    }
    os.environ.update(env)
    yield load_settings()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{database_name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def database_url(settings: Settings) -> str:
    return settings.require_database_url()


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from aiplatform.eventstore.store import create_pool

    pool = await create_pool(settings.require_database_url(), max_size=30)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def projector_worker(settings: Settings) -> Iterator[None]:
    """A real Dramatiq worker on the real Redis broker, consuming the `projector` and `data`
    queues."""
    import dramatiq

    from aiplatform.workers.broker import configure_broker

    broker = configure_broker(settings)
    from aiplatform.workers import actors  # noqa: F401  (declares the actors on this broker)

    worker = dramatiq.Worker(
        broker, queues={"projector", "data"}, worker_threads=2, worker_timeout=20
    )
    worker.start()
    # The scheduler's projector tick, as in production: a catch-up pass stops at the oldest
    # transaction still open, and what committed behind it is projected on the next wake-up.
    stop = threading.Event()
    ticking = threading.Thread(target=_tick_projector, args=(broker, stop), daemon=True)
    ticking.start()
    yield
    stop.set()
    ticking.join(timeout=5)
    worker.stop(timeout=10_000)
    broker.close()


def _tick_projector(broker: Any, stop: threading.Event) -> None:
    from aiplatform.workers.broker import projector_wake_up

    while not stop.wait(1.0):
        try:
            broker.enqueue(projector_wake_up(max_age_ms=2_000))
        except Exception:  # Redis away for a moment: the next tick tries again
            continue


ADMIN_PASSWORD = "admin-password-1"


@pytest.fixture(scope="session")
async def anonymous(
    settings: Settings, projector_worker: None
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client of the API with no credentials."""
    from aiplatform.api.app import create_app

    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def admin_id(settings: Settings) -> str:
    from aiplatform.auth.accounts import Accounts
    from aiplatform.bootstrap import ensure_admin
    from aiplatform.eventstore.store import create_pool

    await ensure_admin(settings, "root", ADMIN_PASSWORD, "root@example.com")
    pool = await create_pool(settings.require_database_url(), max_size=1)
    try:
        account = await Accounts(pool).by_username("root")
    finally:
        await pool.close()
    assert account is not None
    return account.user_id


async def login(client: AsyncTestClient[Litestar], username: str, password: str) -> dict[str, str]:
    response = await client.post(
        "/api/v2/auth/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['data']['access_token']}"}


@pytest.fixture(scope="session")
async def client(
    settings: Settings, projector_worker: None, admin_id: str
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client of the API logged in as an admin."""
    from aiplatform.api.app import create_app

    async with AsyncTestClient(app=create_app(settings)) as test_client:
        test_client.headers.update(await login(test_client, "root", ADMIN_PASSWORD))
        _logged_in_at[id(test_client)] = time.monotonic()
        yield test_client


# Access tokens last 15 minutes, and a whole run takes longer: the admin client logs in again
# before its token gets old, as a real client refreshes.
_logged_in_at: dict[int, float] = {}
_RELOGIN_AFTER_S = 10 * 60


@pytest.fixture(autouse=True)
async def _fresh_admin_token(request: pytest.FixtureRequest) -> None:
    if "client" not in request.fixturenames:
        return
    test_client: AsyncTestClient[Litestar] = request.getfixturevalue("client")
    if time.monotonic() - _logged_in_at.get(id(test_client), 0.0) > _RELOGIN_AFTER_S:
        test_client.headers.update(await login(test_client, "root", ADMIN_PASSWORD))
        _logged_in_at[id(test_client)] = time.monotonic()


async def make_user(
    client: AsyncTestClient[Litestar], *, system_role: str = "user"
) -> tuple[str, str, str]:
    """Creates a user through the API (as the admin `client`); returns id, username, password."""
    username = f"u{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex[:12]}"
    response = await client.post(
        "/api/v2/users",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "password": password,
            "system_role": system_role,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"], username, password
