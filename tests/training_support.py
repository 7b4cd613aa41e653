"""What the training tests share: real `aiplatform worker` processes on the training queue,
generated datasets that a model can learn, and waiting on a job's events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import psutil
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.aggregates import JOBS
from aiplatform.commands import CommandHandler
from aiplatform.domain.jobs import Job
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.eventstore.store import EventStore

Client = AsyncTestClient[Litestar]


def start_training_worker() -> subprocess.Popen[bytes]:
    """`aiplatform worker --queues training --threads 1`, as an operator would run it, reading
    the test run's settings from the environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "aiplatform", "worker", "--queues", "training", "--threads", "1"],
        env=dict(os.environ),
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL) to every process of the worker: Dramatiq's main process and the
    worker processes it forked."""
    try:
        tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    # A worker process left behind (its parent gone) would take later tests' jobs.
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def trainer_processes(job_id: str) -> list[psutil.Process]:
    """Live processes of this job's trainer (its command line names the job's spec file)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(job_id in part for part in cmdline) and not _is_zombie(process):
            found.append(process)
    return found


def _is_zombie(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def text_corpus(size: int = 24_000, seed: int = 1) -> bytes:
    """Sentences from a small grammar: repetitive enough that a tiny model learns it fast."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the bird", "my friend", "the teacher"]
    verbs = ["sees", "likes", "follows", "finds", "helps"]
    objects = ["the ball", "a tree", "the river", "some bread", "the house"]
    lines: list[str] = []
    total = 0
    while total < size:
        line = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}."
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def tabular_csv(rows: int = 1_500, seed: int = 2) -> bytes:
    """Two numeric features; the label is which side of a line the point lies on."""
    rng = random.Random(seed)
    out = ["x,y,noise,label"]
    for _ in range(rows):
        x, y = rng.uniform(-1, 1), rng.uniform(-1, 1)
        label = "above" if y > 0.5 * x else "below"
        out.append(f"{x:.4f},{y:.4f},{rng.random():.4f},{label}")
    return ("\n".join(out) + "\n").encode()


def text_classification_csv(rows: int = 800, seed: int = 3) -> bytes:
    """Short texts whose label is told by their words."""
    rng = random.Random(seed)
    good = ["great", "lovely", "excellent", "happy", "wonderful"]
    bad = ["awful", "terrible", "sad", "horrible", "poor"]
    filler = ["the", "film", "was", "really", "quite", "story", "very"]
    out = ["text,label"]
    for _ in range(rows):
        positive = rng.random() < 0.5
        words = [*rng.sample(filler, 3), rng.choice(good if positive else bad)]
        rng.shuffle(words)
        out.append(f"{' '.join(words)},{'positive' if positive else 'negative'}")
    return ("\n".join(out) + "\n").encode()


async def new_project(client: Client, name: str = "training") -> str:
    response = await client.post("/api/v2/projects", json={"name": name})
    assert response.status_code == 201, response.text
    project_id: str = response.json()["data"]["id"]
    return project_id


async def upload_dataset(
    client: Client, project_id: str, content: bytes, filename: str, name: str = "corpus"
) -> str:
    response = await client.post(
        "/api/v2/datasets",
        data={"project_id": project_id, "name": name},
        files={"file": (filename, content, "application/octet-stream")},
    )
    assert response.status_code == 201, response.text
    dataset_id: str = response.json()["data"]["id"]
    for _ in range(600):
        body = (await client.get(f"/api/v2/datasets/{dataset_id}/versions/v1")).json()
        if body["data"]["quality"] is not None:
            return dataset_id
        await asyncio.sleep(0.1)
    pytest.fail("no quality report within 60 s")


async def submit(client: Client, **body: Any) -> Any:
    return await client.post("/api/v2/training/submit", json=body)


async def submitted_job(client: Client, **body: Any) -> str:
    response = await submit(client, **body)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["data"]["id"]
    return job_id


async def job_events(pool: asyncpg.Pool, job_id: str) -> list[RecordedEvent]:
    return await EventStore(pool).read_stream(f"job-{job_id}")


async def job_state(pool: asyncpg.Pool, job_id: str) -> Job:
    job = await CommandHandler(EventStore(pool)).current_state(JOBS, job_id)
    assert job is not None
    return job


async def wait_for_job(
    pool: asyncpg.Pool,
    job_id: str,
    until: Callable[[Job, list[RecordedEvent]], bool],
    timeout_s: float = 120,
) -> tuple[Job, list[RecordedEvent]]:
    deadline = time.monotonic() + timeout_s
    while True:
        events = await job_events(pool, job_id)
        job = JOBS.fold(events)
        assert job is not None
        if until(job, events):
            return job, events
        if time.monotonic() > deadline:
            types = [e.event_type for e in events]
            pytest.fail(f"job {job_id} is {job.status} after {timeout_s} s; events: {types}")
        await asyncio.sleep(0.2)


def finished(job: Job, _: list[RecordedEvent]) -> bool:
    return job.finished


def of_type(events: list[RecordedEvent], event_type: str) -> list[Any]:
    return [e.event for e in events if e.event_type == event_type]


def loss_values(events: list[RecordedEvent]) -> list[float]:
    values: list[float] = []
    for batch in of_type(events, "MetricsRecorded"):
        if "loss" in batch.series:
            values.extend(batch.series["loss"].values)
    return values
