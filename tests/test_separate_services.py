"""The platform as compose and Kubernetes run it: separate processes sharing only PostgreSQL
and Redis. Two API instances, a projector worker, a data worker, a training worker and the
scheduler, each `aiplatform <command>` as in compose.yaml. A job submitted through the second
API runs to its model while the first API, which never saw the request, reports its
progress and its end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN_PASSWORD
from service_processes import kill_tree, start_api, start_service, terminate, wait_ready
from training_support import text_corpus

pytestmark = pytest.mark.slow

WORKERS = {
    "projector-worker": ["worker", "--queues", "projector", "--threads", "2"],
    "data-worker": ["worker", "--queues", "data,notification,monitoring,maintenance"],
    "training-worker": ["worker", "--queues", "training", "--threads", "1"],
    "scheduler": ["scheduler"],
}
STOP_GRACE_S = 30


class Platform:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.bases: dict[str, str] = {}

    def start(self) -> None:
        for name in ("api-1", "api-2"):
            process, base = start_api(self.log(name))
            self.processes[name], self.bases[name] = process, base
        for name, arguments in WORKERS.items():
            self.processes[name] = start_service(arguments, self.log(name))

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def stop(self) -> dict[str, int | None]:
        """SIGTERM to every service at once, as `docker compose down` does."""
        return {name: terminate(process, STOP_GRACE_S) for name, process in self.processes.items()}


@pytest.fixture
def platform(
    settings: object, admin_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    monkeypatch.setenv("AIPLATFORM_LOG_FORMAT", "json")  # as the container images set it
    running = Platform(tmp_path)
    try:
        running.start()
        for name in ("api-1", "api-2"):
            wait_ready(running.bases[name], running.processes[name], running.log(name))
        yield running
    finally:
        for process in running.processes.values():
            kill_tree(process)


async def login(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v2/auth/token", json={"username": "root", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    api.headers["Authorization"] = f"Bearer {response.json()['data']['access_token']}"


async def poll(api: httpx.AsyncClient, path: str, done: Any, timeout_s: float) -> Any:
    """GETs `path` until `done(data)`; returns every answer's data, oldest first."""
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        response = await api.get(path)
        if response.status_code == 200:
            seen.append(response.json()["data"])
            if done(seen[-1]):
                return seen
        await asyncio.sleep(0.5)
    pytest.fail(f"{path} never got there within {timeout_s} s; last: {seen[-1:]}")


def requests_counted(metrics: str, method: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "aiplatform_http_requests_total" and sample.labels == {
                "method": method,
                "route": route,
                "status": status,
            }:
                return float(sample.value)
    return 0.0


async def test_a_job_submitted_through_one_api_is_followed_through_the_other(
    platform: Platform,
) -> None:
    async with (
        httpx.AsyncClient(base_url=platform.bases["api-1"], timeout=30) as reader,
        httpx.AsyncClient(base_url=platform.bases["api-2"], timeout=30) as writer,
    ):
        await login(writer)
        await login(reader)
        created = await writer.post("/api/v2/projects", json={"name": "separate services"})
        assert created.status_code == 201, created.text
        project_id = created.json()["data"]["id"]
        uploaded = await writer.post(
            "/api/v2/datasets",
            data={"project_id": project_id, "name": "corpus"},
            files={"file": ("corpus.txt", text_corpus(8_000), "text/plain")},
        )
        assert uploaded.status_code == 201, uploaded.text
        dataset_id = uploaded.json()["data"]["id"]
        # The data worker's report, projected by the projector worker, read through API 1.
        await poll(
            reader,
            f"/api/v2/datasets/{dataset_id}/versions/v1",
            lambda data: data["quality"] is not None,
            timeout_s=120,
        )
        submitted = await writer.post(
            "/api/v2/training/submit",
            json={
                "project_id": project_id,
                "template": "char-lm",
                "dataset_id": dataset_id,
                "hyperparameters": {"epochs": 2},
            },
        )
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["data"]["id"]

        statuses = await poll(
            reader,
            f"/api/v2/training/jobs/{job_id}/status",
            lambda data: data["status"] in ("succeeded", "failed", "cancelled"),
            timeout_s=300,
        )
        final = statuses[-1]
        assert final["status"] == "succeeded", final
        assert "running" in {status["status"] for status in statuses}
        # The trained model, registered by the training worker, listed by API 1.
        models = await poll(
            reader,
            f"/api/v2/models?project_id={project_id}",
            lambda data: len(data) == 1,
            timeout_s=30,
        )
        assert models[-1][0]["source_job_id"] == job_id

        # Each API counts what it answered itself.
        counted_1 = (await reader.get("/metrics")).text
        counted_2 = (await writer.get("/metrics")).text
    status_route = "/api/v2/training/jobs/{job_id}/status"
    assert requests_counted(counted_1, "GET", status_route, "200") == len(statuses)
    assert requests_counted(counted_2, "GET", status_route, "200") == 0
    assert requests_counted(counted_2, "POST", "/api/v2/training/submit", "201") == 1
    assert requests_counted(counted_1, "POST", "/api/v2/training/submit", "201") == 0

    codes = platform.stop()
    left = {name: code for name, code in codes.items() if code is None}
    assert not left, f"had to be killed: {left}"

    # Every service logs one JSON object per line (the container images set this format).
    for name in platform.processes:
        lines = platform.log(name).read_text().splitlines()
        assert lines, name
        for line in lines:
            logged = json.loads(line)
            assert {"time", "level", "logger", "message", "request_id"} <= logged.keys()
