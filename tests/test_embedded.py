"""The embedded PostgreSQL and Redis: start, persist across restarts, stop without leftovers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

import aiplatform
from aiplatform.embedded import EmbeddedServiceError, start_embedded_services


def _server_processes(data_dir: Path) -> list[psutil.Process]:
    """postgres and redis-server processes working in data_dir: both chdir to their data."""
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.info["name"] in {"postgres", "redis-server"} and Path(
                process.cwd()
            ).is_relative_to(data_dir):
                found.append(process)
        except psutil.Error:
            continue
    return found


async def _sql(database_url: str, *statements: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        for statement in statements[:-1]:
            await connection.execute(statement)
        rows: list[asyncpg.Record] = await connection.fetch(statements[-1])
    finally:
        await connection.close()
    return rows


def test_services_work_persist_and_stop_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    services = start_embedded_services(data_dir)
    try:
        assert services.database_url.startswith("postgresql://postgres@127.0.0.1:")
        assert services.database_url.endswith("/aiplatform")
        rows = asyncio.run(
            _sql(
                services.database_url,
                "CREATE TABLE kept (value text)",
                "INSERT INTO kept VALUES ('first run')",
                "SELECT current_database() AS name",
            )
        )
        assert rows[0]["name"] == "aiplatform"
        client = redis.Redis.from_url(services.redis_url)
        assert client.ping()
        client.set("kept", "first run")
        assert client.get("kept") == b"first run"
        client.close()
        first_urls = (services.database_url, services.redis_url)
    finally:
        services.stop()
    services.stop()  # idempotent
    assert _server_processes(data_dir) == []

    services = start_embedded_services(data_dir)
    try:
        # The remembered ports were free again, so the URLs are stable across restarts.
        assert (services.database_url, services.redis_url) == first_urls
        rows = asyncio.run(_sql(services.database_url, "SELECT value FROM kept"))
        assert [row["value"] for row in rows] == ["first run"]
        client = redis.Redis.from_url(services.redis_url)
        assert client.get("kept") == b"first run"  # from the append-only file
        client.close()
    finally:
        services.stop()
    assert _server_processes(data_dir) == []


def test_second_start_on_a_live_data_dir_is_refused(tmp_path: Path) -> None:
    services = start_embedded_services(tmp_path)
    try:
        with pytest.raises(EmbeddedServiceError, match="in use by another"):
            start_embedded_services(tmp_path)
    finally:
        services.stop()


_START_AND_WAIT = """
import sys, time
from pathlib import Path
from aiplatform.embedded import start_embedded_services
start_embedded_services(Path(sys.argv[1]))
print("started", flush=True)
time.sleep(60)
"""


def test_start_recovers_from_a_killed_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(aiplatform.__file__).parents[1])}
    crashed = subprocess.Popen(
        [sys.executable, "-c", _START_AND_WAIT, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert crashed.stdout is not None
    assert crashed.stdout.readline() == "started\n"
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    crashed.stdout.close()
    # PostgreSQL (daemonised by pg_ctl) outlives the killed run; Redis dies with its parent.
    deadline = time.monotonic() + 5
    while {p.name() for p in _server_processes(tmp_path)} != {"postgres"}:
        assert time.monotonic() < deadline, _server_processes(tmp_path)
        time.sleep(0.05)
    leftover_pids = {p.pid for p in _server_processes(tmp_path)}

    services = start_embedded_services(tmp_path)
    try:
        assert not leftover_pids & {p.pid for p in _server_processes(tmp_path)}
        assert asyncio.run(_sql(services.database_url, "SELECT 1 AS one"))[0]["one"] == 1
    finally:
        services.stop()
    assert _server_processes(tmp_path) == []
