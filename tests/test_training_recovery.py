"""A training worker killed with SIGKILL mid-job: its message comes back to another worker,
which resumes the job from its last checkpoint instead of starting over, and the job still
ends with exactly one model and one JobSucceeded."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from aiplatform.config import Settings
from aiplatform.domain.jobs import Job
from aiplatform.eventstore.codec import RecordedEvent
from training_support import (
    Client,
    finished,
    new_project,
    of_type,
    start_training_worker,
    stop_worker,
    submitted_job,
    text_corpus,
    trainer_processes,
    upload_dataset,
    wait_for_job,
)

pytestmark = pytest.mark.slow


def checkpointed_and_running(job: Job, events: list[RecordedEvent]) -> bool:
    # Not "progress past the checkpoint": progress is appended at most twice a second, and on a
    # fast machine only together with each checkpoint, so it never shows a step beyond one.
    return bool(of_type(events, "JobCheckpointed")) and not job.finished


async def test_a_job_whose_worker_is_killed_resumes_from_its_checkpoint_elsewhere(
    client: Client, pool: asyncpg.Pool, settings: Settings, projector_worker: None
) -> None:
    project_id = await new_project(client)
    dataset_id = await upload_dataset(client, project_id, text_corpus(), "corpus.txt")
    first_worker = start_training_worker()
    second_worker = None
    try:
        job_id = await submitted_job(
            client,
            project_id=project_id,
            template="char-lm",
            dataset_id=dataset_id,
            hyperparameters={"epochs": 6, "checkpoint_every": 25},
        )
        await wait_for_job(pool, job_id, checkpointed_and_running, timeout_s=90)
        stop_worker(first_worker, kill=True)
        # The trainer follows its worker (it is killed with its launcher, or notices it lost
        # its parent).
        for _ in range(50):
            if not trainer_processes(job_id):
                break
            await asyncio.sleep(0.1)
        assert not trainer_processes(job_id)

        second_worker = start_training_worker()
        job, events = await wait_for_job(pool, job_id, finished, timeout_s=150)
    finally:
        stop_worker(first_worker, kill=True)
        if second_worker is not None:
            stop_worker(second_worker)

    assert job.status == "succeeded", job.error
    (retried,) = of_type(events, "JobRetried")
    assert "worker" in retried.reason
    first_start, second_start = of_type(events, "JobStarted")
    assert first_start.resumed_from_step is None
    # The checkpoint recorded last before the kill is where the second attempt starts.
    retry_at = next(i for i, e in enumerate(events) if e.event is retried)
    last_checkpoint = of_type(events[:retry_at], "JobCheckpointed")[-1]
    assert second_start.resumed_from_step == last_checkpoint.step
    restart = next(i for i, e in enumerate(events) if e.event is second_start)
    resumed_progress = of_type(events[restart:], "JobProgressed")
    assert resumed_progress[0].step > last_checkpoint.step  # it did not start at 0 again
    assert resumed_progress[-1].step == resumed_progress[-1].total_steps

    (succeeded,) = of_type(events, "JobSucceeded")
    models = await pool.fetch(
        "SELECT model_id FROM model_index WHERE project_id = $1", uuid.UUID(project_id)
    )
    assert [str(row["model_id"]) for row in models] == [succeeded.model_id]
