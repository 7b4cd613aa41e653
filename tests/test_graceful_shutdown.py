"""Stopping a service, as a deploy or a scale-down does (SIGTERM to its main process), loses
no work: a training worker has its trainer save a checkpoint and hands the job back, which
another worker resumes from that checkpoint; the API answers the requests it has in flight
before it exits."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from aiplatform.domain.jobs import Job
from aiplatform.eventstore.codec import RecordedEvent
from service_processes import kill_tree, start_api, start_service, terminate, wait_ready
from training_support import (
    Client,
    finished,
    new_project,
    of_type,
    submitted_job,
    text_corpus,
    trainer_processes,
    upload_dataset,
    wait_for_job,
)

pytestmark = pytest.mark.slow

# Long enough for a checkpoint of a small model on a loaded machine; the deployments give the
# same ratio (grace period above the worker's own wait).
SHUTDOWN_TIMEOUT_S = 60
TRAINING_WORKER = ["worker", "--queues", "training", "--threads", "1"]


def well_under_way(job: Job, events: list[RecordedEvent]) -> bool:
    progress = of_type(events, "JobProgressed")
    return bool(progress) and progress[-1].step >= 20


async def test_a_stopped_training_worker_checkpoints_and_its_job_resumes_elsewhere(
    client: Client, pool: asyncpg.Pool, projector_worker: None, tmp_path: Path
) -> None:
    project_id = await new_project(client, "graceful")
    dataset_id = await upload_dataset(client, project_id, text_corpus(), "corpus.txt")
    arguments = [*TRAINING_WORKER, "--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S)]
    first = start_service(arguments, tmp_path / "first.log")
    second = None
    try:
        job_id = await submitted_job(
            client,
            project_id=project_id,
            template="char-lm",
            dataset_id=dataset_id,
            # No periodic checkpoint: the only one before the stop is the one SIGTERM asks for.
            hyperparameters={"epochs": 6, "checkpoint_every": 0},
        )
        await wait_for_job(pool, job_id, well_under_way, timeout_s=180)
        stopped_at = time.monotonic()
        code = await asyncio.to_thread(terminate, first, SHUTDOWN_TIMEOUT_S + 20)
        stop_took = time.monotonic() - stopped_at
        log = (tmp_path / "first.log").read_text()
        assert code == 0, f"the worker did not stop by itself: {log[-3000:]}"
        assert not trainer_processes(job_id)
        job, events = await wait_for_job(
            pool, job_id, lambda _, events: bool(of_type(events, "JobRetried")), timeout_s=30
        )
        (checkpoint,) = of_type(events, "JobCheckpointed")
        (retried,) = of_type(events, "JobRetried")
        assert "saved a checkpoint" in retried.reason
        assert checkpoint.step >= 20
        # The stop took the time of a checkpoint, not of the rest of the job.
        assert stop_took < SHUTDOWN_TIMEOUT_S

        second = start_service(TRAINING_WORKER, tmp_path / "second.log")
        job, events = await wait_for_job(pool, job_id, finished, timeout_s=300)
    finally:
        kill_tree(first)
        if second is not None:
            await asyncio.to_thread(terminate, second, 30)

    assert job.status == "succeeded", job.error
    first_start, second_start = of_type(events, "JobStarted")
    assert first_start.resumed_from_step is None
    assert second_start.resumed_from_step == checkpoint.step
    restart = next(i for i, e in enumerate(events) if e.event is second_start)
    resumed = of_type(events[restart:], "JobProgressed")
    assert resumed[0].step > checkpoint.step
    assert resumed[-1].step == resumed[-1].total_steps
    assert len(of_type(events, "JobSucceeded")) == 1


@pytest.fixture
def api(settings: object, tmp_path: Path) -> Iterator[tuple[object, str]]:
    process, base = start_api(tmp_path / "api.log")
    try:
        wait_ready(base, process, tmp_path / "api.log")
        yield process, base
    finally:
        kill_tree(process)


def test_a_stopped_api_answers_the_requests_in_flight(
    api: tuple[object, str], admin_id: str
) -> None:
    process, base = api
    body_started = threading.Event()

    def trickled_body() -> Iterator[bytes]:
        """A login whose body arrives over two seconds: in flight when SIGTERM comes."""
        username = f"nobody-{uuid.uuid4().hex[:8]}"
        payload = f'{{"username": "{username}", "password": "wrong password"}}'.encode()
        yield payload[:5]
        body_started.set()
        time.sleep(2)
        yield payload[5:]

    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(
            httpx.post(
                f"{base}/api/v2/auth/token",
                content=trickled_body(),
                headers={"content-type": "application/json"},
                timeout=30,
            )
        )

    sender = threading.Thread(target=send)
    sender.start()
    assert body_started.wait(10)
    time.sleep(0.3)
    code = terminate(process, 20)  # type: ignore[arg-type]
    sender.join(30)
    # Uvicorn drains, then ends as the signal would have ended it.
    assert code in (0, -signal.SIGTERM)
    [answer] = answers
    # Answered, not cut off: the wrong password is refused as such.
    assert answer.status_code == 401, answer.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=5)
