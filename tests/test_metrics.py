"""`GET /metrics` as Prometheus scrapes it: request counts and latencies by route template and
status, and the platform's figures read from the real stores (event log, projection lag,
queue depths, jobs by status, worker processes, GPUs). Also: JSON log lines carry the ids
that the request's events record."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
import redis
from dramatiq import Message
from litestar import Litestar, Request, get
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from aiplatform.api.context import event_metadata, request_id_middleware
from aiplatform.api.log_context import log_context_middleware
from aiplatform.auth.permissions import PUBLIC
from aiplatform.cache import key_prefix
from aiplatform.config import Settings
from aiplatform.monitoring.records import MonitoringKeys
from aiplatform.observability.logs import JsonFormatter
from aiplatform.projectors.registry import all_projectors
from aiplatform.workers.broker import QUEUES, build_broker
from aiplatform.workers.monitoring import Monitor
from conftest import REDIS_URL
from fake_nvml import FakeGpu, FakeNvml
from training_support import new_project, submitted_job, text_corpus, upload_dataset

Client = AsyncTestClient[Litestar]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
GIB = 1024**3


def samples(text: str) -> Samples:
    parsed: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def value(parsed: Samples, metric: str, /, **labels: str) -> float | None:
    return parsed.get((metric, frozenset(labels.items())))


def matching(
    parsed: Samples, metric: str, /, **labels: str
) -> dict[frozenset[tuple[str, str]], float]:
    return {
        key_labels: number
        for (sample_name, key_labels), number in parsed.items()
        if sample_name == metric and set(labels.items()) <= key_labels
    }


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def scrape_until(
    client: Client, condition: Callable[[Samples], bool], timeout_s: float = 30
) -> Samples:
    """Platform figures are kept for 2 s between reads: poll until they show `condition`."""
    deadline = time.monotonic() + timeout_s
    while True:
        parsed = await scrape(client)
        if condition(parsed):
            return parsed
        if time.monotonic() > deadline:
            pytest.fail(f"/metrics did not show the expected figures within {timeout_s} s")
        await asyncio.sleep(0.5)


async def test_requests_are_counted_by_route_template_method_and_status(
    anonymous: Client,
) -> None:
    route = "/api/v2/projects/{project_id}"
    before = await scrape(anonymous)
    for _ in range(3):
        response = await anonymous.get(f"/api/v2/projects/{uuid.uuid4()}")
        assert response.status_code == 401
    assert (await anonymous.get("/health")).status_code == 200
    after = await scrape(anonymous)

    def grown(metric: str, /, **labels: str) -> float:
        return (value(after, metric, **labels) or 0) - (value(before, metric, **labels) or 0)

    # One series per route, not per id.
    assert grown("aiplatform_http_requests_total", method="GET", route=route, status="401") == 3
    assert grown("aiplatform_http_requests_total", method="GET", route="/health", status="200") == 1
    assert not [
        labels
        for labels in matching(after, "aiplatform_http_requests_total")
        if any(part in dict(labels)["route"] for part in ("-", "?"))
    ]
    assert grown("aiplatform_http_request_duration_seconds_count", method="GET", route=route) == 3
    slowest = value(
        after,
        "aiplatform_http_request_duration_seconds_bucket",
        method="GET",
        route=route,
        le="+Inf",
    )
    assert slowest is not None
    assert slowest >= 3
    assert value(after, "aiplatform_http_requests_in_flight") == 1  # the scrape itself


@pytest.fixture
def fake_gpu_host(settings: Settings) -> Iterator[str]:
    host = f"metrics-gpu-host-{uuid.uuid4().hex[:8]}"
    yield host
    client = redis.Redis.from_url(REDIS_URL)
    stale = list(client.scan_iter(match=f"{key_prefix(settings.instance)}*{host}*", count=1000))
    if stale:
        client.delete(*stale)
    members = MonitoringKeys(key_prefix(settings.instance))
    client.zrem(members.hosts, host)
    client.close()


async def test_the_platform_figures_come_from_the_stores(
    client: Client, pool: asyncpg.Pool, settings: Settings, fake_gpu_host: str
) -> None:
    # The event log: a write moves its head.
    project_id = await new_project(client, f"metrics-{uuid.uuid4().hex[:6]}")
    head = await pool.fetchval("SELECT max(global_position) FROM events")
    parsed = await scrape_until(
        client, lambda p: (value(p, "aiplatform_events_appended_total") or 0) >= head
    )
    assert value(parsed, "aiplatform_figures_source_up", source="database") == 1
    assert value(parsed, "aiplatform_figures_source_up", source="redis") == 1

    # Projection lag: every read model's active version, caught up once the projector ran.
    names = {p.read_model.name for p in all_projectors()}

    def caught_up(p: Samples) -> bool:
        lags = matching(p, "aiplatform_projection_lag_events", state="active")
        # Other tests install probe read models that nothing projects: only the platform's.
        platform = {dict(labels)["read_model"]: n for labels, n in lags.items()}
        return platform.keys() >= names and all(platform[name] == 0 for name in names)

    parsed = await scrape_until(client, caught_up)
    seconds = matching(parsed, "aiplatform_projection_lag_seconds", state="active")
    behind = {dict(labels)["read_model"]: n for labels, n in seconds.items()}
    assert all(behind[name] == 0 for name in names)

    # Queue depth: messages nobody in this run consumes wait in the notification queue.
    broker = build_broker(settings)
    try:
        for _ in range(3):
            broker.enqueue(
                Message(
                    queue_name="notification",
                    actor_name="metrics_probe",
                    args=(),
                    kwargs={},
                    options={},
                )
            )
        parsed = await scrape_until(
            client,
            lambda p: (
                value(p, "aiplatform_queue_messages", queue="notification", state="ready") == 3
            ),
        )
    finally:
        broker.client.delete(
            f"{broker.namespace}:notification", f"{broker.namespace}:notification.msgs"
        )
        broker.close()
    assert {
        dict(labels)["queue"] for labels in matching(parsed, "aiplatform_queue_messages")
    } == set(QUEUES)

    # Jobs by status: a submitted job waits (no training worker runs here).
    pending_before = value(parsed, "aiplatform_jobs", status="pending") or 0
    dataset_id = await upload_dataset(client, project_id, text_corpus(2_000), "corpus.txt")
    job_id = await submitted_job(
        client, project_id=project_id, template="char-lm", dataset_id=dataset_id
    )
    parsed = await scrape_until(
        client, lambda p: value(p, "aiplatform_jobs", status="pending") == pending_before + 1
    )
    for status in ("running", "succeeded", "failed", "cancelled"):
        assert value(parsed, "aiplatform_jobs", status=status) is not None
    assert (await client.post(f"/api/v2/training/jobs/{job_id}/cancel")).status_code in (200, 202)

    # GPUs and worker processes, from what the workers' monitor writes to Redis.
    gpu = FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-1",
        utilization=87,
        memory_used=40 * GIB,
        memory_total=80 * GIB,
        temperature=66,
        power_mw=312_500,
    )
    sync_redis = redis.Redis.from_url(REDIS_URL)
    try:
        monitor = Monitor(
            sync_redis,
            key_prefix(settings.instance),
            host=fake_gpu_host,
            nvml=FakeNvml([gpu]),
            queues=lambda: ["training"],
        )
        await asyncio.to_thread(monitor.tick)
        labels = {"host": fake_gpu_host, "index": "0", "name": "NVIDIA H100 80GB HBM3"}
        parsed = await scrape_until(
            client, lambda p: value(p, "aiplatform_gpu_utilization_percent", **labels) == 87
        )
    finally:
        sync_redis.close()
    assert value(parsed, "aiplatform_gpu_memory_used_bytes", **labels) == 40 * GIB
    assert value(parsed, "aiplatform_gpu_memory_total_bytes", **labels) == 80 * GIB
    assert value(parsed, "aiplatform_gpu_temperature_celsius", **labels) == 66
    assert value(parsed, "aiplatform_gpu_power_watts", **labels) == 312.5
    assert value(parsed, "aiplatform_gpu_running_job", **labels) == 0
    assert value(parsed, "aiplatform_gpu_host_available", host=fake_gpu_host) == 1
    assert (value(parsed, "aiplatform_worker_processes", queue="training") or 0) >= 1


async def test_metrics_still_answer_when_redis_is_unreachable(settings: Settings) -> None:
    from aiplatform.api.app import create_app

    unreachable = Settings(**{**settings.__dict__, "redis_url": "redis://127.0.0.1:9/0"})
    async with AsyncTestClient(app=create_app(unreachable)) as api:
        parsed = await scrape(api)
    assert value(parsed, "aiplatform_figures_source_up", source="redis") == 0
    assert value(parsed, "aiplatform_figures_source_up", source="database") == 1
    assert not matching(parsed, "aiplatform_queue_messages")
    assert value(parsed, "aiplatform_events_appended_total") is not None


async def test_json_log_lines_carry_the_ids_the_requests_events_record() -> None:
    logger = logging.getLogger("test_metrics.json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    recorded: list[Any] = []

    @get("/probe", opt={"permission": PUBLIC}, sync_to_thread=False)
    def probe(request: Request[Any, Any, Any]) -> str:
        recorded.append(event_metadata(request))
        logger.info("answering the probe")
        return "ok"

    app = Litestar([probe], middleware=[request_id_middleware, log_context_middleware])
    try:
        async with AsyncTestClient(app=app) as api:
            first = await api.get("/probe", headers={"x-correlation-id": "checkout-42"})
            second = await api.get("/probe", headers={"x-request-id": "caller-chosen-id"})
        logger.info("outside any request")
    finally:
        logger.removeHandler(handler)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "answering the probe",
        "answering the probe",
        "outside any request",
    ]
    assert lines[0]["request_id"] == first.headers["x-request-id"] == recorded[0].request_id
    assert lines[0]["correlation_id"] == "checkout-42" == recorded[0].correlation_id
    assert lines[1]["request_id"] == "caller-chosen-id" == recorded[1].request_id
    assert lines[1]["correlation_id"] is None
    assert recorded[1].correlation_id is None
    assert lines[2]["request_id"] is None
    assert {"time", "level", "logger"} <= lines[0].keys()
    assert lines[0]["level"] == "info"
    assert lines[0]["logger"] == "test_metrics.json"
    assert second.status_code == 200
