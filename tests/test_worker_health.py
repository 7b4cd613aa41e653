"""`aiplatform worker-health` answers from the heartbeats of this host's worker processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import redis

from aiplatform.cache import key_prefix
from aiplatform.config import Settings
from aiplatform.workers.health import unhealthy_reason
from aiplatform.workers.monitoring import Monitor

BEAT_WITHIN_S = 30


def test_healthy_while_a_worker_of_the_host_beats_and_consumes_the_queues(
    settings: Settings,
) -> None:
    # A host of its own, so that workers other tests left beating here do not count.
    host = f"health-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(settings.require_redis_url())
    prefix = key_prefix(settings.instance)
    try:
        quiet = asyncio.run(unhealthy_reason(settings, host, set()))
        assert quiet == f"no worker process on {host} has beaten recently"
        Monitor(client, prefix, queues=lambda: ["projector", "data"], host=host).beat()
        assert asyncio.run(unhealthy_reason(settings, host, {"projector"})) is None
        assert asyncio.run(unhealthy_reason(settings, host, {"projector", "data"})) is None
        missing = asyncio.run(unhealthy_reason(settings, host, {"projector", "training"}))
        assert missing == f"no live worker process on {host} consumes training"
        # The same process beating a minute ago (its last beat long past): a dead worker.
        stale = time.time() - 60
        Monitor(client, prefix, queues=lambda: ["training"], host=host, clock=lambda: stale).beat()
        dead = asyncio.run(unhealthy_reason(settings, host, {"training"}))
        assert dead == f"no worker process on {host} has beaten recently"
    finally:
        client.close()


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
