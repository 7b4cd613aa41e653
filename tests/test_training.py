"""Training end to end: submit over HTTP, a real `aiplatform worker` on the training queue runs
the trainer through `accelerate launch`, the job's events tell what happened, the model lands
in the registry. Also: bad submissions, a trainer that fails, the time limit, cancel, and the
order of priorities."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import dramatiq
import pytest

from aiplatform import training_queue
from aiplatform.aggregates import DATASETS, JOBS
from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.config import Settings
from aiplatform.domain.jobs import FailJob, Job, StartAttempt, SubmitJob
from aiplatform.eventstore.codec import EventMetadata, RecordedEvent
from aiplatform.eventstore.store import EventStore
from aiplatform.ml.templates import get_template, validate_hyperparameters
from aiplatform.storage import blob_store_from_settings
from aiplatform.workers.resources import WorkerResources
from training_support import (
    Client,
    finished,
    job_events,
    job_state,
    loss_values,
    new_project,
    of_type,
    start_training_worker,
    stop_worker,
    submit,
    submitted_job,
    tabular_csv,
    text_classification_csv,
    text_corpus,
    trainer_processes,
    upload_dataset,
    wait_for_job,
)

pytestmark = pytest.mark.slow

# Enough steps to still be running when the test acts on it (a few seconds at least).
LONG_RUN = {"epochs": 200, "checkpoint_every": 0}


@pytest.fixture(scope="module")
def training_worker(settings: Settings, projector_worker: None) -> Iterator[None]:
    worker = start_training_worker()
    yield
    stop_worker(worker)


@pytest.fixture(scope="module")
async def corpus(client: Client) -> tuple[str, str]:
    project_id = await new_project(client)
    return project_id, await upload_dataset(client, project_id, text_corpus(), "corpus.txt")


async def no_trainer_left(job_id: str, within_s: float = 2.0) -> None:
    """The killed trainer's processes are gone (a moment for the kernel to reap them)."""
    for _ in range(int(within_s / 0.1)):
        if not trainer_processes(job_id):
            return
        await asyncio.sleep(0.1)
    assert not trainer_processes(job_id)


def running(job: Job, events: list[RecordedEvent]) -> bool:
    return job.status == "running" and bool(of_type(events, "JobProgressed"))


async def test_a_char_lm_trains_on_a_cpu_within_a_minute_and_is_registered(
    client: Client, pool: asyncpg.Pool, training_worker: None, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    started = time.monotonic()
    job_id = await submitted_job(
        client, project_id=project_id, template="char-lm", dataset_id=dataset_id, name="poet"
    )
    job, events = await wait_for_job(pool, job_id, finished, timeout_s=120)
    elapsed = time.monotonic() - started
    assert job.status == "succeeded", job.error
    assert elapsed < 60, f"took {elapsed:.0f} s"

    started_events = of_type(events, "JobStarted")
    assert len(started_events) == 1
    assert started_events[0].devices == ["cpu"]
    losses = loss_values(events)
    assert len(losses) > 10
    head, tail = losses[: len(losses) // 10], losses[-(len(losses) // 10) :]
    assert sum(tail) / len(tail) < 0.7 * sum(head) / len(head), "the loss did not fall"
    # Batched: many steps, few events.
    progress = of_type(events, "JobProgressed")
    assert progress[-1].step == progress[-1].total_steps
    assert len(events) < progress[-1].total_steps

    (succeeded,) = of_type(events, "JobSucceeded")
    assert succeeded.resource_usage["peak_memory_bytes"] > 0
    assert succeeded.resource_usage["devices"] == ["cpu"]
    assert succeeded.resource_usage["gpu"] is None  # no GPU here: nothing to summarise
    model = (await client.get(f"/api/v2/models/{succeeded.model_id}")).json()["data"]
    assert model["name"] == "poet"
    assert model["source_job_id"] == job_id
    assert model["framework"] == "safetensors"
    card = model["card"]
    assert card["template"] == "char-lm"
    assert card["training_dataset_id"] == dataset_id
    assert card["training_dataset_version"] == "v1"
    assert card["training_job_id"] == job_id
    assert card["hyperparameters"]["block_size"] > 0
    assert "val_loss" in model["metrics"]
    download = await client.get(f"/api/v2/models/{succeeded.model_id}/download")
    assert download.status_code == 200
    assert download.content[8:9] == b"{"  # a safetensors header
    await no_trainer_left(job_id)


@pytest.mark.parametrize(
    ("template", "content", "filename"),
    [
        ("tabular-classifier", tabular_csv(), "points.csv"),
        ("text-classifier", text_classification_csv(), "reviews.csv"),
    ],
)
async def test_classifiers_learn_a_learnable_dataset(
    client: Client,
    pool: asyncpg.Pool,
    training_worker: None,
    template: str,
    content: bytes,
    filename: str,
) -> None:
    project_id = await new_project(client)
    dataset_id = await upload_dataset(client, project_id, content, filename)
    job_id = await submitted_job(
        client, project_id=project_id, template=template, dataset_id=dataset_id
    )
    job, events = await wait_for_job(pool, job_id, finished)
    assert job.status == "succeeded", job.error
    (succeeded,) = of_type(events, "JobSucceeded")
    assert succeeded.metrics["val_accuracy"] >= 0.8, succeeded.metrics


async def test_bad_submissions_say_what_is_wrong_and_store_nothing(
    client: Client, pool: asyncpg.Pool, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    base = {"project_id": project_id, "dataset_id": dataset_id, "template": "char-lm"}
    before = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'job-%'")

    async def refused(expected_field: str, status: int = 422, **changes: object) -> str:
        response = await submit(client, **{**base, **changes})
        assert response.status_code == status, response.text
        body = response.json()
        fields = [f["field"] for f in body["meta"].get("fields", [])]
        assert expected_field in fields, body
        message: str = body["error"]
        return message

    message = await refused("template", template="resnet-9000")
    assert "char-lm" in message  # the known templates are listed
    message = await refused("hyperparameters.epochs", hyperparameters={"epochs": "ten"})
    assert "epochs" in message
    message = await refused("hyperparameters.learning_rate", hyperparameters={"learning_rate": 5})
    assert "at most" in message
    await refused("hyperparameters.wings", hyperparameters={"wings": 2})
    message = await refused("dataset_version", dataset_version="v7")
    assert "v1" in message  # the versions that exist
    await refused("dataset_id", dataset_id="00000000-0000-4000-8000-000000000000")
    message = await refused("dataset_id", template="tabular-classifier")
    assert "plain text" in message
    unlabelled = await upload_dataset(
        client, project_id, b"a,b\n" + b"1,2\n3,4\n" * 40, "table.csv", name="unlabelled"
    )
    message = await refused("dataset_id", template="tabular-classifier", dataset_id=unlabelled)
    assert "`label`" in message
    await refused("priority", priority=3)
    await refused("time_limit_s", time_limit_s=0)
    await refused("base_model", base_model="00000000-0000-4000-8000-000000000000")

    after = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'job-%'")
    assert after == before


async def test_a_trainer_that_raises_fails_the_job_once_with_its_error(
    client: Client, pool: asyncpg.Pool, settings: Settings, training_worker: None
) -> None:
    project_id = await new_project(client)
    dataset_id = await upload_dataset(client, project_id, tabular_csv(200), "points.csv")
    # The file changes under the platform after its report: the trainer's reading fails.
    dataset = await CommandHandler(EventStore(pool)).current_state(DATASETS, dataset_id)
    assert dataset is not None
    blob = settings.data_dir / "blobs" / dataset.versions["v1"].blob_key
    assert blob.is_file()
    blob.write_bytes(b"x,y,noise,label\n" + b"\xff\xfe not numbers at all,,\n" * 50)

    job_id = await submitted_job(
        client, project_id=project_id, template="tabular-classifier", dataset_id=dataset_id
    )
    job, events = await wait_for_job(pool, job_id, finished)
    assert job.status == "failed"
    (failure,) = of_type(events, "JobFailed")
    assert failure.error
    assert failure.traceback
    assert "Traceback" in failure.traceback
    assert not of_type(events, "JobRetried")  # a bug in the data is not retried
    assert len(of_type(events, "JobStarted")) == 1


async def test_a_job_over_its_time_limit_is_stopped_and_failed(
    client: Client, pool: asyncpg.Pool, training_worker: None, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    job_id = await submitted_job(
        client,
        project_id=project_id,
        template="char-lm",
        dataset_id=dataset_id,
        hyperparameters=LONG_RUN,
        time_limit_s=6,
    )
    job, events = await wait_for_job(pool, job_id, finished, timeout_s=60)
    assert job.status == "failed"
    (failure,) = of_type(events, "JobFailed")
    assert "time limit of 6 s" in failure.error
    warnings = [
        line.message
        for batch in of_type(events, "JobLogged")
        for line in batch.lines
        if line.level == "warning"
    ]
    assert any("time limit" in w for w in warnings)
    await no_trainer_left(job_id)


async def test_cancel_stops_a_running_job_within_five_seconds_and_leaves_no_process(
    client: Client, pool: asyncpg.Pool, training_worker: None, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    job_id = await submitted_job(
        client,
        project_id=project_id,
        template="char-lm",
        dataset_id=dataset_id,
        hyperparameters=LONG_RUN,
    )
    await wait_for_job(pool, job_id, running, timeout_s=60)
    assert trainer_processes(job_id)
    asked = time.monotonic()
    response = await client.post(f"/api/v2/training/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    job, events = await wait_for_job(pool, job_id, finished, timeout_s=10)
    assert job.status == "cancelled"
    assert time.monotonic() - asked < 5
    await no_trainer_left(job_id)
    assert of_type(events, "JobCancelRequested")

    again = await client.post(f"/api/v2/training/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["error"]


async def test_waiting_jobs_run_in_priority_order_and_a_waiting_job_cancels_at_once(
    client: Client, pool: asyncpg.Pool, training_worker: None, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    common = {"project_id": project_id, "template": "char-lm", "dataset_id": dataset_id}
    short = {"epochs": 1, "checkpoint_every": 0}
    blocker = await submitted_job(client, **common, hyperparameters=LONG_RUN, priority=0)
    await wait_for_job(pool, blocker, running, timeout_s=60)

    low = await submitted_job(client, **common, hyperparameters=short, priority=9)
    normal = await submitted_job(client, **common, hyperparameters=short, priority=5)
    doomed = await submitted_job(client, **common, hyperparameters=short, priority=1)
    high = await submitted_job(client, **common, hyperparameters=short, priority=1)
    cancelled = await client.post(f"/api/v2/training/jobs/{doomed}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["data"]["status"] == "cancelled"
    await client.post(f"/api/v2/training/jobs/{blocker}/cancel")

    started_at = {}
    for job_id in (low, normal, high):
        job, events = await wait_for_job(pool, job_id, finished, timeout_s=120)
        assert job.status == "succeeded", job.error
        started_at[job_id] = next(e.recorded_at for e in events if e.event_type == "JobStarted")
    assert sorted(started_at, key=started_at.__getitem__) == [high, normal, low]
    assert (await job_state(pool, doomed)).status == "cancelled"
    assert await pool.fetchval("SELECT count(*) FROM training_queue") == 0


async def test_a_job_whose_token_was_lost_is_dispatched_by_the_maintenance_sweep(
    pool: asyncpg.Pool, settings: Settings, training_worker: None, corpus: tuple[str, str]
) -> None:
    from aiplatform.workers.maintenance import dispatch_training

    project_id, dataset_id = corpus
    # Tokens left over from other tests (a cancelled job's) would run the job below too: let
    # the worker use them up (they claim nothing), so only the sweep's token can start it.
    broker = dramatiq.get_broker()
    for _ in range(100):
        if broker.do_qsize("training") == 0:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.1)
    # Submitted while Redis was unreachable: the job and its queue row committed, no token.
    job_id = str(uuid.uuid4())
    command = SubmitJob(
        job_id=job_id,
        project_id=project_id,
        name="orphan",
        template="char-lm",
        dataset_id=dataset_id,
        dataset_version="v1",
        base_model_id=None,
        hyperparameters=validate_hyperparameters(get_template("char-lm"), {"epochs": 1}),
    )

    async def queue_row(connection: asyncpg.Connection, _: object) -> None:
        await training_queue.enqueue_job(connection, job_id, command.priority)

    await CommandHandler(EventStore(pool)).handle(
        JOBS,
        job_id,
        command,
        CommandContext(metadata=EventMetadata(actor="test")),
        new_stream=True,
        in_transaction=queue_row,
    )
    # What the maintenance worker has, built on this test's event loop.
    resources = WorkerResources(
        settings,
        pool,
        Cache(connect(settings.require_redis_url()), key_prefix(settings.instance)),
        [],
        EventStore(pool),
        blob_store_from_settings(settings),
    )
    assert await dispatch_training(resources) == 0  # too fresh: its token may be on its way
    await pool.execute(
        "UPDATE training_queue SET queued_at = now() - interval '1 minute' WHERE job_id = $1",
        uuid.UUID(job_id),
    )
    assert await dispatch_training(resources) == 1
    job, _ = await wait_for_job(pool, job_id, finished)
    assert job.status == "succeeded", job.error


async def test_a_model_continues_training_from_a_registered_base_model(
    client: Client, pool: asyncpg.Pool, training_worker: None, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    common = {"project_id": project_id, "dataset_id": dataset_id}
    first = await submitted_job(
        client, **common, template="char-lm", name="base", hyperparameters={"epochs": 1}
    )
    job, events = await wait_for_job(pool, first, finished)
    assert job.status == "succeeded", job.error
    base_model = of_type(events, "JobSucceeded")[0].model_id

    # Another template cannot continue it.
    refused = await submit(client, **common, template="text-classifier", base_model=base_model)
    assert refused.status_code == 422
    assert "char-lm" in refused.json()["error"]

    # Its architecture wins over what the submission says: the weights have that shape.
    response = await submit(
        client,
        **common,
        template="char-lm",
        name="base",
        base_model=base_model,
        hyperparameters={"epochs": 1, "d_model": 32, "n_heads": 2},
    )
    assert response.status_code == 201, response.text
    submitted = response.json()["data"]
    assert submitted["hyperparameters"]["d_model"] == job.hyperparameters["d_model"]
    assert submitted["base_model_id"] == base_model
    continued, events = await wait_for_job(pool, submitted["id"], finished)
    assert continued.status == "succeeded", continued.error
    # It starts where the base model ended: a lower first loss than the base model's first.
    first_loss = loss_values(await job_events(pool, first))[0]
    assert loss_values(events)[0] < first_loss
    model = (await client.get(f"/api/v2/models/{continued.model_id}")).json()["data"]
    assert model["version"] == 2  # the same name: the next version of the line


async def test_starting_an_experiment_submits_its_job_and_the_job_finishes_it(
    client: Client, pool: asyncpg.Pool, training_worker: None, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    created = await client.post(
        "/api/v2/experiments",
        json={"project_id": project_id, "name": "needs config", "config": {}},
    )
    experiment_id = created.json()["data"]["id"]
    incomplete = await client.post(f"/api/v2/experiments/{experiment_id}/start")
    assert incomplete.status_code == 422
    assert "config.template" in [f["field"] for f in incomplete.json()["meta"]["fields"]]

    config = {"template": "char-lm", "dataset_id": dataset_id, "hyperparameters": {"epochs": 1}}
    updated = await client.put(f"/api/v2/experiments/{experiment_id}", json={"config": config})
    assert updated.status_code == 200, updated.text
    started = await client.post(f"/api/v2/experiments/{experiment_id}/start")
    assert started.status_code == 200, started.text
    assert started.json()["data"]["status"] == "running"
    history = await EventStore(pool).read_stream(f"experiment-{experiment_id}")
    job_id = history[-1].event.job_id  # type: ignore[attr-defined]
    job, _ = await wait_for_job(pool, job_id, finished)
    assert job.status == "succeeded", job.error
    assert job.experiment_id == experiment_id

    for _ in range(100):
        experiment = (await client.get(f"/api/v2/experiments/{experiment_id}")).json()["data"]
        if experiment["status"] != "running":
            break
        await asyncio.sleep(0.1)
    assert experiment["status"] == "completed"
    assert "val_loss" in experiment["metrics"]


async def test_a_crashed_trainer_is_retried_from_its_checkpoint(
    client: Client, pool: asyncpg.Pool, training_worker: None, corpus: tuple[str, str]
) -> None:
    project_id, dataset_id = corpus
    job_id = await submitted_job(
        client,
        project_id=project_id,
        template="char-lm",
        dataset_id=dataset_id,
        hyperparameters={"epochs": 4, "checkpoint_every": 20},
    )

    def checkpointed(job: Job, events: list[RecordedEvent]) -> bool:
        return bool(of_type(events, "JobCheckpointed"))

    await wait_for_job(pool, job_id, checkpointed, timeout_s=60)
    # The trainer itself dies (out of memory, a segfault): not its worker.
    (trainer,) = [
        p for p in trainer_processes(job_id) if "accelerate.commands.launch" not in p.cmdline()
    ]
    trainer.kill()
    job, events = await wait_for_job(pool, job_id, finished, timeout_s=120)
    assert job.status == "succeeded", job.error
    (retried,) = of_type(events, "JobRetried")
    assert "exited with code" in retried.reason
    _, second = of_type(events, "JobStarted")
    assert second.attempt == 2
    assert second.resumed_from_step is not None
    assert second.resumed_from_step >= 20


async def test_cleanup_removes_only_old_work_directories_of_finished_jobs(
    pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    from aiplatform.workers.maintenance import WORK_DIR_RETENTION_S, clean_up_work_dirs

    handler = CommandHandler(EventStore(pool))
    context = CommandContext(metadata=EventMetadata(actor="test"))
    template = get_template("char-lm")

    async def job(*commands: object) -> str:
        job_id = str(uuid.uuid4())
        submit = SubmitJob(
            job_id=job_id,
            project_id=str(uuid.uuid4()),
            name="m",
            template=template.name,
            dataset_id=str(uuid.uuid4()),
            dataset_version="v1",
            base_model_id=None,
            hyperparameters=validate_hyperparameters(template, {}),
        )
        await handler.handle(JOBS, job_id, submit, context, new_stream=True)
        for make in commands:
            await handler.handle(JOBS, job_id, make(job_id), context)  # type: ignore[operator]
        return job_id

    def start(job_id: str) -> StartAttempt:
        return StartAttempt(job_id=job_id, worker="w", devices=["cpu"])

    def fail(job_id: str) -> FailJob:
        return FailJob(job_id=job_id, error="boom")

    old_failed = await job(start, fail)
    recent_failed = await job(start, fail)
    old_running = await job(start)
    long_ago = time.time() - WORK_DIR_RETENTION_S - 3_600
    for job_id in (old_failed, recent_failed, old_running):
        directory = tmp_path / "jobs" / job_id
        (directory / "checkpoints").mkdir(parents=True)
        if job_id != recent_failed:
            os.utime(directory / "checkpoints", (long_ago, long_ago))
            os.utime(directory, (long_ago, long_ago))
    resources = WorkerResources(
        dataclasses.replace(settings, data_dir=tmp_path),
        pool,
        Cache(connect(settings.require_redis_url()), key_prefix(settings.instance)),
        [],
        EventStore(pool),
        blob_store_from_settings(settings),
    )
    assert await clean_up_work_dirs(resources) == [old_failed]
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == sorted(
        [recent_failed, old_running]
    )
