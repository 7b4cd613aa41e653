"""`aiplatform worker-health` answers from the heartbeats of this host's worker processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

from aiplatform.config import Settings
from aiplatform.workers.health import unhealthy_reason

BEAT_WITHIN_S = 30


async def test_healthy_while_this_hosts_worker_beats_and_consumes_the_queues(
    settings: Settings, projector_worker: None
) -> None:
    host = socket.gethostname()
    deadline = time.monotonic() + BEAT_WITHIN_S
    while (reason := await unhealthy_reason(settings, host, {"projector"})) is not None:
        assert time.monotonic() < deadline, reason
        await asyncio.sleep(0.5)
    assert await unhealthy_reason(settings, host, {"projector", "data"}) is None

    missing = await unhealthy_reason(settings, host, {"projector", "training"})
    assert missing == f"no live worker process on {host} consumes training"
    elsewhere = await unhealthy_reason(settings, "another-host", set())
    assert elsewhere == "no worker process on another-host has beaten recently"


def test_the_command_exits_0_when_healthy_and_1_with_the_reason_otherwise(
    settings: Settings, projector_worker: None
) -> None:
    def check(queues: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aiplatform", "worker-health", "--queues", queues],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
        )

    deadline = time.monotonic() + BEAT_WITHIN_S
    while (healthy := check("projector")).returncode != 0:
        assert time.monotonic() < deadline, healthy.stderr
        time.sleep(0.5)
    assert healthy.stdout.strip() == "healthy"
    unhealthy = check("inference")
    assert unhealthy.returncode == 1
    assert "consumes inference" in unhealthy.stderr


def test_without_redis_it_is_unhealthy_and_says_why(settings: Settings) -> None:
    unreachable = settings.with_services(settings.require_database_url(), "redis://127.0.0.1:9/0")
    result = subprocess.run(
        [sys.executable, "-m", "aiplatform", "worker-health"],
        env={**os.environ, "AIPLATFORM_REDIS_URL": unreachable.require_redis_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot read the workers' heartbeats from Redis" in result.stderr
