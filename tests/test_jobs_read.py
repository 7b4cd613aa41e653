"""Reading training jobs: the job's streams are written as the training worker writes them
(lifecycle commands through the command handler, progress, metrics and log lines as recorded
batches), then read over HTTP: lists, a job, its status and ETA, its log, its loss curve and
its history, and who may read them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import dramatiq
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.aggregates import JOBS
from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.config import Settings
from aiplatform.domain import jobs
from aiplatform.domain.jobs import (
    JobCheckpointed,
    JobLogged,
    JobProgressed,
    LogLine,
    MetricSeries,
    MetricsRecorded,
)
from aiplatform.eventstore.codec import Event, EventMetadata
from aiplatform.eventstore.store import AppendResult, EventStore
from aiplatform.workers.broker import projector_wake_up
from aiplatform.workers.waker import GATE_TTL_MS, wake_gate_key
from conftest import login, make_user

Client = AsyncTestClient[Litestar]
JOBS_URL = "/api/v2/training/jobs"
LOSS_URL = "/api/v2/metrics/loss"
WORKER = CommandContext(metadata=EventMetadata(actor="system:worker-1"))


@pytest.fixture
async def commands(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[CommandHandler]:
    """The command path the training worker takes. Appends wake the projector through the
    API's gate: a burst of appends queues one catch-up, not one per append."""
    cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))

    async def wake_projector(_: AppendResult) -> None:
        if await cache.set_if_absent(wake_gate_key(cache), GATE_TTL_MS):
            await asyncio.to_thread(dramatiq.get_broker().enqueue, projector_wake_up())

    yield CommandHandler(EventStore(pool), listeners=[wake_projector])
    await cache.close()


class Run:
    """One job's stream, written like the training worker writes it. Each write remembers its
    event position, so a read can wait until the read model has it (`?after=`)."""

    def __init__(self, client: Client, commands: CommandHandler, job_id: str):
        self.client = client
        self.commands = commands
        self.job_id = job_id
        self.position = 0

    @property
    def url(self) -> str:
        return f"{JOBS_URL}/{self.job_id}"

    async def command(self, command: Any) -> None:
        result = await self.commands.handle(JOBS, self.job_id, command, WORKER)
        assert result.position is not None, command
        self.position = result.position

    async def record(self, *events: Event) -> None:
        stream = jobs.stream_id(self.job_id)
        result = await self.commands.record(stream, list(events), WORKER)
        self.position = result.last_position

    async def start(self) -> None:
        await self.command(jobs.StartAttempt(job_id=self.job_id, worker="gpu-1", devices=["cpu"]))

    async def progress(self, step: int, total: int, epoch: int = 0) -> None:
        await self.record(
            JobProgressed(
                job_id=self.job_id,
                step=step,
                epoch=epoch,
                total_steps=total,
                samples_per_second=128.0,
            )
        )

    async def metrics(self, **series: tuple[list[int], list[float]]) -> None:
        await self.record(
            MetricsRecorded(
                job_id=self.job_id,
                series={
                    name: MetricSeries(steps=steps, values=values)
                    for name, (steps, values) in series.items()
                },
            )
        )

    async def log(self, *messages: str, level: str = "info") -> None:
        now = time.time()
        lines = [LogLine(time=now, level=level, message=m) for m in messages]
        await self.record(JobLogged(job_id=self.job_id, lines=lines))

    async def read(self, path: str = "", **params: Any) -> Any:
        """GET the job (or one of its routes), once the read model has every write so far."""
        return await read_after(self.client, self.url + path, self.position, **params)


async def read_after(
    client: Client,
    url: str,
    position: int,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> Any:
    """GET `url` once its read model has the event at `position` (`?after=`).

    A pass of the projector skips the events of transactions younger than one still open (its
    other thread's, say) and leaves them to the next wake-up: the scheduler's tick, which tests
    do not run. A read that timed out (stale, 503, or 404 from a route that reads only its
    read model) sends that tick and tries again."""
    for _ in range(3):
        response = await client.get(url, params={"after": position, **params}, headers=headers)
        stale = response.status_code in (404, 503) or (response.json()["meta"] or {}).get("stale")
        if not stale:
            assert response.status_code == 200, response.text
            return response.json()
        await asyncio.to_thread(dramatiq.get_broker().enqueue, projector_wake_up())
    raise AssertionError(f"{url} never caught up with position {position}")


async def submit(
    client: Client,
    commands: CommandHandler,
    project_id: str,
    *,
    submitted_by: str,
    template: str = "tabular-classifier",
    name: str = "churn",
) -> Run:
    """A job submitted as the submit route does: the command handler, the caller as actor."""
    job_id = str(uuid.uuid4())
    run = Run(client, commands, job_id)
    command = jobs.SubmitJob(
        job_id=job_id,
        project_id=project_id,
        name=name,
        template=template,
        dataset_id=str(uuid.uuid4()),
        dataset_version="v1",
        base_model_id=None,
        hyperparameters={"epochs": 3, "lr": 0.001},
    )
    context = CommandContext(metadata=EventMetadata(actor=submitted_by))
    result = await commands.handle(JOBS, job_id, command, context, new_stream=True)
    assert result.position is not None
    run.position = result.position
    return run


async def new_project(client: Client, headers: dict[str, str] | None = None) -> str:
    """A project, once in the projects read model, whose members lists of jobs are limited to."""
    response = await client.post("/api/v2/projects", json={"name": "jobs"}, headers=headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["data"]["id"]
    position = response.json()["meta"]["position"]
    url = f"/api/v2/projects/{project_id}"
    await read_after(client, url, position, headers=headers)
    return project_id


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def expected_finish(status: dict[str, Any], start_step: int) -> datetime:
    """The ETA rule: this attempt's step rate since it started, applied to the steps left,
    from its last progress report (here the job's last event)."""
    started, progressed = parse(status["started_at"]), parse(status["updated_at"])
    seconds_per_step = (progressed - started).total_seconds() / (status["step"] - start_step)
    remaining = status["total_steps"] - status["step"]
    return progressed + timedelta(seconds=remaining * seconds_per_step)


async def eta_checked(run: Run, start_step: int) -> Any:
    """The job's status, whose ETA must follow the rule, counted down to the time of the read."""
    before = datetime.now(UTC)
    status = (await run.read("/status"))["data"]
    after = datetime.now(UTC)
    finish = parse(status["estimated_finish_at"])
    assert abs(finish - expected_finish(status, start_step)) < timedelta(milliseconds=1)
    assert finish > parse(status["updated_at"])
    slack = 0.1  # the ETA is rounded to tenths of a second
    assert (finish - after).total_seconds() - slack <= status["eta_s"]
    assert status["eta_s"] <= (finish - before).total_seconds() + slack
    return status


async def test_a_job_read_through_its_life_with_a_retry_that_resumes_from_a_checkpoint(
    client: Client, commands: CommandHandler, admin_id: str
) -> None:
    project_id = await new_project(client)
    run = await submit(client, commands, project_id, submitted_by=admin_id)
    pending = (await run.read("/status"))["data"]
    assert pending["status"] == "pending"
    assert pending["progress"] == 0
    assert pending["eta_s"] is None

    await run.start()
    await run.log("loading dataset v1", "model: 3 layers")
    await asyncio.sleep(0.2)  # a measurable step rate
    await run.metrics(loss=(list(range(1, 41)), [1.0 / s for s in range(1, 41)]))
    await run.progress(step=40, total=120)
    status = await eta_checked(run, start_step=0)
    assert status["status"] == "running"
    assert status["attempt"] == 1
    assert status["step"] == 40
    assert status["total_steps"] == 120
    assert abs(status["progress"] - 40 / 120) < 1e-9
    assert status["samples_per_second"] == 128.0
    assert status["latest_metrics"] == {"loss": 1.0 / 40}

    await run.record(JobCheckpointed(job_id=run.job_id, step=60, epoch=1, path="ckpt/step-60"))
    await run.progress(step=90, total=120, epoch=2)
    await run.metrics(
        loss=(list(range(41, 91)), [1.0 / s for s in range(41, 91)]),
        val_loss=([60, 90], [0.5, 0.4]),
    )
    await run.log("worker lost", level="warning")
    # The worker died at step 90; the job goes back to step 60 and runs again.
    await run.command(jobs.RetryJob(job_id=run.job_id, reason="worker stopped"))
    retried = (await run.read())["data"]
    assert retried["status"] == "pending"
    assert retried["retry_reason"] == "worker stopped"
    await run.start()
    resumed = (await run.read("/status"))["data"]
    assert (resumed["status"], resumed["attempt"]) == ("running", 2)
    assert (resumed["step"], resumed["epoch"]) == (60, 1)
    assert resumed["eta_s"] is None, "no progress in this attempt yet"

    await asyncio.sleep(0.2)
    # The second attempt reports steps 61-120 again, with other values; one step twice in a
    # batch keeps the later value.
    await run.metrics(
        loss=([*range(61, 121), 120], [*(2.0 / s for s in range(61, 121)), 0.0125]),
        val_loss=([90, 120], [0.45, 0.3]),
    )
    await run.progress(step=90, total=120, epoch=2)
    status = await eta_checked(run, start_step=60)
    assert status["latest_metrics"] == {"loss": 0.0125, "val_loss": 0.3}

    await run.command(
        jobs.SucceedJob(
            job_id=run.job_id,
            model_id=str(uuid.uuid4()),
            metrics={"accuracy": 0.93},
            duration_s=12.5,
            resource_usage={"peak_memory_mb": 512},
        )
    )
    job = (await run.read())["data"]
    assert job["status"] == "succeeded"
    assert job["progress"] == 1
    assert job["attempt"] == 2
    assert job["metrics"] == {"accuracy": 0.93}
    assert job["resource_usage"] == {"peak_memory_mb": 512}
    assert job["checkpoint_step"] == 60
    assert job["checkpoint_path"] == "ckpt/step-60"
    assert job["worker"] == "gpu-1"
    assert job["submitted_by"] == admin_id
    assert job["log_lines"] == 3
    assert job["finished_at"] is not None
    assert job["hyperparameters"] == {"epochs": 3, "lr": 0.001}
    history = await client.get(f"{run.url}/history", params={"limit": 100})
    assert history.status_code == 200
    types = [event["type"] for event in history.json()["data"]]
    assert types[0] == "JobSubmitted"
    assert types[-1] == "JobSucceeded"
    assert types.count("JobStarted") == 2
    assert history.json()["meta"]["total"] == job["version"] == len(types)
    done = (await run.read("/status"))["data"]
    assert (done["status"], done["eta_s"], done["estimated_finish_at"]) == ("succeeded", None, None)

    curve = (await client.get(LOSS_URL, params={"job_id": run.job_id})).json()["data"]
    loss = curve["series"]["loss"]
    assert loss["steps"] == list(range(1, 121)), "each step once, the first attempt's 61-90 gone"
    assert loss["values"][:60] == [1.0 / s for s in range(1, 61)]
    assert loss["values"][60:-1] == [2.0 / s for s in range(61, 120)]
    assert loss["values"][-1] == 0.0125
    assert curve["series"]["val_loss"] == {
        "steps": [60, 90, 120],
        "values": [0.5, 0.45, 0.3],
        "total_points": 3,
    }
    assert (curve["total_points"], curve["returned_points"]) == (123, 123)


async def test_the_cached_status_follows_the_job(
    client: Client, commands: CommandHandler, admin_id: str
) -> None:
    """The status is cached in Redis; every change tombstones it, so no read keeps seeing an
    old step once the projector has moved on."""
    run = await submit(client, commands, await new_project(client), submitted_by=admin_id)
    await run.start()
    await run.progress(step=1, total=10)
    assert (await run.read("/status"))["data"]["step"] == 1
    cached = await client.get(f"{run.url}/status")
    assert cached.json()["data"]["step"] == 1
    await run.progress(step=7, total=10)
    await run.read()  # the read model has step 7; the cached status is tombstoned right after
    deadline = time.monotonic() + 5
    while (await client.get(f"{run.url}/status")).json()["data"]["step"] != 7:
        assert time.monotonic() < deadline, "the cached status was never invalidated"
        await asyncio.sleep(0.02)


async def test_jobs_are_listed_newest_first_filtered_and_only_to_members(
    client: Client, anonymous: Client, commands: CommandHandler, admin_id: str
) -> None:
    member_id, member_name, member_password = await make_user(client)
    owner_id, owner_name, owner_password = await make_user(client)
    _, stranger_name, stranger_password = await make_user(client)
    member = await login(anonymous, member_name, member_password)
    owner = await login(anonymous, owner_name, owner_password)
    stranger = await login(anonymous, stranger_name, stranger_password)
    ours = await new_project(client)
    granted = await client.post(
        f"/api/v2/projects/{ours}/members", json={"user_id": member_id, "role": "viewer"}
    )
    assert granted.status_code == 200, granted.text
    # Lists restrict by the memberships of the projects read model.
    await read_after(client, f"/api/v2/projects/{ours}", granted.json()["meta"]["position"])
    theirs = await new_project(anonymous, owner)

    tabular = await submit(client, commands, ours, submitted_by=admin_id)
    text = await submit(client, commands, ours, submitted_by=admin_id, template="text-classifier")
    await text.start()
    hidden = await submit(client, commands, theirs, submitted_by=owner_id)
    await hidden.read("/status")
    await text.read()

    async def listed(headers: dict[str, str], **params: Any) -> tuple[list[str], Any]:
        response = await anonymous.get(JOBS_URL, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["data"]], response.json()["meta"]

    assert (await listed(member))[0] == [text.job_id, tabular.job_id]
    assert (await listed(member, status="running"))[0] == [text.job_id]
    assert (await listed(member, template="tabular-classifier"))[0] == [tabular.job_id]
    assert (await listed(member, project_id=ours, status="succeeded"))[0] == []
    first, meta = await listed(member, limit=1)
    assert (first, meta) == ([text.job_id], {"total": 2, "page": 1, "limit": 1, "has_more": True})
    second, meta = await listed(member, limit=1, page=2)
    assert (second, meta["has_more"]) == ([tabular.job_id], False)
    assert (await listed(owner))[0] == [hidden.job_id]
    assert (await listed(stranger)) == ([], {"total": 0, "page": 1, "limit": 20, "has_more": False})
    admin_headers = dict(client.headers)
    assert (await listed(admin_headers, project_id=theirs))[0] == [hidden.job_id]

    # Whoever cannot read a project learns nothing about its jobs, not even that they exist.
    refused = await anonymous.get(JOBS_URL, params={"project_id": theirs}, headers=member)
    assert refused.status_code == 404
    for path in ("", "/status", "/logs", "/history"):
        response = await anonymous.get(f"{hidden.url}{path}", headers=member)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["meta"]["code"] == "not_found"
    curve = await anonymous.get(LOSS_URL, params={"job_id": hidden.job_id}, headers=member)
    assert curve.status_code == 404
    readable = await anonymous.get(f"{tabular.url}/status", headers=member)
    assert readable.status_code == 200
    assert (await anonymous.get(JOBS_URL)).status_code == 401


async def test_logs_read_oldest_first_by_page_or_after_a_line(
    client: Client, commands: CommandHandler, admin_id: str
) -> None:
    run = await submit(client, commands, await new_project(client), submitted_by=admin_id)
    await run.start()
    messages = [f"line {n}" for n in range(1, 13)]
    await run.log(*messages[:4])
    await run.log(*messages[4:7], level="warning")
    await run.log(*messages[7:])
    await run.read()

    async def logs(**params: Any) -> Any:
        response = await client.get(f"{run.url}/logs", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    pages = [await logs(limit=5, page=page) for page in (1, 2, 3)]
    assert [[line["message"] for line in page["data"]] for page in pages] == [
        messages[:5],
        messages[5:10],
        messages[10:],
    ]
    assert [page["meta"]["has_more"] for page in pages] == [True, True, False]
    assert pages[0]["meta"] == {
        "total": 12,
        "page": 1,
        "limit": 5,
        "has_more": True,
        "next_after_seq": 5,
    }
    first = pages[0]["data"][0]
    assert (first["seq"], first["level"]) == (1, "info")
    assert abs(parse(first["time"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert pages[1]["data"][0]["level"] == "warning"

    tail = await logs(after_seq=10)
    assert [line["seq"] for line in tail["data"]] == [11, 12]
    assert (tail["meta"]["next_after_seq"], tail["meta"]["has_more"]) == (12, False)
    caught_up = await logs(after_seq=12)
    assert (caught_up["data"], caught_up["meta"]["next_after_seq"]) == ([], 12)
    everything = await logs(limit=1000)
    assert [line["seq"] for line in everything["data"]] == list(range(1, 13))

    both = await client.get(f"{run.url}/logs", params={"page": 1, "after_seq": 3})
    assert both.status_code == 400
    too_many = await client.get(f"{run.url}/logs", params={"limit": 1001})
    assert too_many.status_code == 400


async def test_a_long_loss_curve_comes_back_in_the_points_asked_for_with_its_spike(
    client: Client, commands: CommandHandler, admin_id: str
) -> None:
    run = await submit(client, commands, await new_project(client), submitted_by=admin_id)
    await run.start()
    empty = (await client.get(LOSS_URL, params={"job_id": run.job_id})).json()["data"]
    assert empty == {
        "job_id": run.job_id,
        "series": {"loss": {"steps": [], "values": [], "total_points": 0}},
        "total_points": 0,
        "returned_points": 0,
    }
    total, spike = 30_000, 17_345
    values = {step: 5.0 / (1 + step / 500) for step in range(1, total + 1)}
    values[spike] = 40.0
    for start in range(1, total + 1, 5_000):
        steps = list(range(start, start + 5_000))
        await run.metrics(loss=(steps, [values[s] for s in steps]))
    await run.read()

    for points in (2, 3, 200, 5000):
        response = await client.get(LOSS_URL, params={"job_id": run.job_id, "points": points})
        assert response.status_code == 200, response.text
        curve = response.json()["data"]
        loss = curve["series"]["loss"]
        assert (curve["total_points"], loss["total_points"]) == (total, total)
        assert len(loss["steps"]) == curve["returned_points"] == points
        assert loss["steps"] == sorted(set(loss["steps"]))
        assert (loss["steps"][0], loss["steps"][-1]) == (1, total)
        assert loss["values"] == [values[s] for s in loss["steps"]]
        if points >= 200:
            assert spike in loss["steps"]


async def test_bad_input_is_refused_with_the_right_status(client: Client) -> None:
    unknown = uuid.uuid4()
    for url in (f"{JOBS_URL}/{unknown}", f"{JOBS_URL}/{unknown}/status"):
        response = await client.get(url)
        assert response.status_code == 404, response.text
        assert response.json()["meta"]["code"] == "not_found"
    assert (await client.get(LOSS_URL, params={"job_id": str(unknown)})).status_code == 404
    for params in (
        {"job_id": str(unknown), "points": 1},
        {"job_id": str(unknown), "points": 5001},
        {"job_id": "not-a-uuid"},
        {},
    ):
        response = await client.get(LOSS_URL, params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["meta"]["code"] == "validation_error"
    for params in ({"status": "exploded"}, {"limit": 0}, {"project_id": "nope"}):
        response = await client.get(JOBS_URL, params=params)
        assert response.status_code == 400, (params, response.text)
    assert (await client.get(f"{JOBS_URL}/not-a-uuid")).status_code in (400, 404)
