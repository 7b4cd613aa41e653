"""Live streams over real HTTP: a uvicorn server in this process, read as server-sent events by
httpx, while a job's stream is written as the training worker writes it (the command handler,
waking the projector through the API's gate)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import dramatiq
import httpx
import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.aggregates import JOBS
from aiplatform.api.app import create_app
from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.config import Settings
from aiplatform.domain import jobs
from aiplatform.domain.jobs import JobLogged, JobProgressed, LogLine
from aiplatform.eventstore.codec import Event, EventMetadata
from aiplatform.eventstore.store import AppendResult, EventStore
from aiplatform.projectors.read_models import load_read_model
from aiplatform.streams.feed import StreamFeed
from aiplatform.streams.history import cursor_of
from aiplatform.workers.broker import projector_wake_up
from aiplatform.workers.waker import GATE_TTL_MS, wake_gate_key
from conftest import ADMIN_PASSWORD, login, make_user

Client = AsyncTestClient[Litestar]
WORKER = CommandContext(metadata=EventMetadata(actor="system:worker-1"))
HEARTBEAT_S = 0.3
WAIT_S = 20.0


# A live server ------------------------------------------------------------------------------


@dataclasses.dataclass
class Live:
    base_url: str
    app: Litestar

    @property
    def feed(self) -> StreamFeed:
        feed: StreamFeed = self.app.state.services.streams
        return feed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def live(settings: Settings, projector_worker: None) -> AsyncIterator[Live]:
    app = create_app(settings)
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the server did not start"
        await asyncio.sleep(0.02)
    live = Live(base_url=f"http://127.0.0.1:{port}", app=app)
    live.feed.heartbeat_s = HEARTBEAT_S
    yield live
    server.should_exit = True
    await serving


@pytest.fixture
async def commands(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[CommandHandler]:
    """The command path the training worker takes; appends wake the projector."""
    cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))

    async def wake_projector(_: AppendResult) -> None:
        if await cache.set_if_absent(wake_gate_key(cache), GATE_TTL_MS):
            await asyncio.to_thread(dramatiq.get_broker().enqueue, projector_wake_up())

    yield CommandHandler(EventStore(pool), listeners=[wake_projector])
    await cache.close()


# Reading server-sent events -----------------------------------------------------------------


@dataclasses.dataclass
class Message:
    id: int | None
    event: str
    data: dict[str, Any]


class Sse:
    """One open stream: its messages, and the comments (heartbeats) it saw."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.comments: list[str] = []
        self._lines = response.aiter_lines()

    async def opened(self) -> None:
        """Reads the stream's preamble (`retry:`), sent once the stream is subscribed."""
        async with asyncio.timeout(WAIT_S):
            assert (await anext(self._lines)).startswith("retry:")
            assert await anext(self._lines) == ""

    async def next(self, timeout_s: float = WAIT_S) -> Message:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout_s):
            async for line in self._lines:
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                elif "data" in fields:
                    return Message(
                        id=int(fields["id"]) if "id" in fields else None,
                        event=fields.get("event", "message"),
                        data=json.loads(fields["data"]),
                    )
        raise AssertionError("the stream ended")

    async def quiet(self, after_s: float) -> list[Message]:
        """Every message until none came for `after_s`."""
        received: list[Message] = []
        while True:
            try:
                received.append(await self.next(timeout_s=after_s))
            except TimeoutError:
                return received

    async def until(self, event: str) -> list[Message]:
        """Messages up to and including the first of type `event`."""
        seen = [await self.next()]
        while seen[-1].event != event:
            seen.append(await self.next())
        return seen


@asynccontextmanager
async def stream(
    live: Live,
    headers: dict[str, str],
    channels: str,
    last_event_id: int | None = None,
) -> AsyncIterator[Sse]:
    request_headers = dict(headers)
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = str(last_event_id)
    async with (
        httpx.AsyncClient(base_url=live.base_url, timeout=WAIT_S) as http,
        http.stream(
            "GET", "/api/v2/streams", params={"channels": channels}, headers=request_headers
        ) as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = Sse(response)
        await sse.opened()
        yield sse


async def refused(live: Live, headers: dict[str, str], channels: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=WAIT_S) as http:
        return await http.get("/api/v2/streams", params={"channels": channels}, headers=headers)


# Writing a job's stream ---------------------------------------------------------------------


async def new_project(client: Client, headers: dict[str, str] | None = None) -> str:
    response = await client.post("/api/v2/projects", json={"name": "live"}, headers=headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["data"]["id"]
    return project_id


async def submit(commands: CommandHandler, project_id: str, submitted_by: str) -> str:
    job_id = str(uuid.uuid4())
    command = jobs.SubmitJob(
        job_id=job_id,
        project_id=project_id,
        name="churn",
        template="tabular-classifier",
        dataset_id=str(uuid.uuid4()),
        dataset_version="v1",
        base_model_id=None,
        hyperparameters={"epochs": 1},
    )
    context = CommandContext(metadata=EventMetadata(actor=submitted_by))
    await commands.handle(JOBS, job_id, command, context, new_stream=True)
    return job_id


async def start(commands: CommandHandler, job_id: str) -> None:
    command = jobs.StartAttempt(job_id=job_id, worker="gpu-1", devices=["cpu"])
    await commands.handle(JOBS, job_id, command, WORKER)


async def record(commands: CommandHandler, job_id: str, *events: Event) -> None:
    await commands.record(jobs.stream_id(job_id), list(events), WORKER)


def progressed(job_id: str, step: int) -> JobProgressed:
    return JobProgressed(
        job_id=job_id, step=step, epoch=0, total_steps=10, samples_per_second=100.0
    )


async def succeed(commands: CommandHandler, job_id: str) -> None:
    command = jobs.SucceedJob(
        job_id=job_id,
        model_id=str(uuid.uuid4()),
        metrics={"loss": 0.1},
        duration_s=1.0,
        resource_usage={},
    )
    await commands.handle(JOBS, job_id, command, WORKER)


async def job_positions(pool: asyncpg.Pool, job_id: str) -> list[int]:
    events = await EventStore(pool).read_stream(jobs.stream_id(job_id))
    return [event.global_position for event in events]


async def fed(live: Live, pool: asyncpg.Pool, position: int) -> None:
    """Waits until the server's feed has passed the event at `position`: a stream opened
    after that starts after it."""
    cursor = await cursor_of(pool, position)
    assert cursor is not None
    deadline = time.monotonic() + WAIT_S
    while live.feed.cursor < cursor:
        assert time.monotonic() < deadline, "the feed did not catch up"
        await asyncio.sleep(0.02)


async def admin_headers(client: Client) -> dict[str, str]:
    return await login(client, "root", ADMIN_PASSWORD)


# The scenarios ------------------------------------------------------------------------------


async def test_a_job_subscriber_sees_its_progress_and_final_status_and_so_does_its_project(
    live: Live, client: Client, commands: CommandHandler, pool: asyncpg.Pool, admin_id: str
) -> None:
    headers = await admin_headers(client)
    project_id = await new_project(client)
    job_id = await submit(commands, project_id, admin_id)
    submitted = await job_positions(pool, job_id)
    await fed(live, pool, submitted[-1])

    async with (
        stream(live, headers, f"job:{job_id}") as job_stream,
        stream(live, headers, f"project:{project_id}") as project_stream,
    ):
        await start(commands, job_id)
        for step in (3, 6, 10):
            await record(commands, job_id, progressed(job_id, step))
        await record(
            commands,
            job_id,
            JobLogged(job_id=job_id, lines=[LogLine(time=0.0, level="info", message="done")]),
        )
        await succeed(commands, job_id)

        seen = await job_stream.until("JobSucceeded")
        in_project = await project_stream.until("JobSucceeded")

    expected = (await job_positions(pool, job_id))[len(submitted) :]
    assert [m.id for m in seen] == expected
    assert [m.event for m in seen] == [
        "JobStarted",
        "JobProgressed",
        "JobProgressed",
        "JobProgressed",
        "JobLogged",
        "JobSucceeded",
    ]
    assert [m.data["data"]["step"] for m in seen if m.event == "JobProgressed"] == [3, 6, 10]
    last = seen[-1].data
    assert last["channel"] == f"job:{job_id}"
    assert last["stream_id"] == jobs.stream_id(job_id)
    assert last["type"] == "JobSucceeded"
    assert last["position"] == seen[-1].id
    assert last["recorded_at"]
    assert last["data"]["metrics"] == {"loss": 0.1}
    assert "metadata" not in last
    # The project's channel carries the job's events too (a job stream in the project).
    assert [m.id for m in in_project] == expected
    assert {m.data["channel"] for m in in_project} == {f"project:{project_id}"}


async def test_a_client_that_reconnects_with_last_event_id_gets_exactly_what_it_missed(
    live: Live, client: Client, commands: CommandHandler, pool: asyncpg.Pool, admin_id: str
) -> None:
    headers = await admin_headers(client)
    job_id = await submit(commands, await new_project(client), admin_id)
    before = len(await job_positions(pool, job_id))
    await fed(live, pool, (await job_positions(pool, job_id))[-1])

    async with stream(live, headers, f"job:{job_id}") as first:
        await start(commands, job_id)
        await record(commands, job_id, progressed(job_id, 1))
        seen = await first.until("JobProgressed")
    last_seen = seen[-1].id
    assert last_seen is not None

    # Disconnected: the job goes on.
    for step in (2, 3, 4):
        await record(commands, job_id, progressed(job_id, step))
    positions = await job_positions(pool, job_id)
    missed = positions[positions.index(last_seen) + 1 :]

    async with stream(live, headers, f"job:{job_id}", last_event_id=last_seen) as second:
        replayed = [await second.next() for _ in missed]
        await record(commands, job_id, progressed(job_id, 5))
        await succeed(commands, job_id)
        rest = await second.until("JobSucceeded")

    assert [m.id for m in replayed] == missed
    assert [m.data["data"]["step"] for m in replayed] == [2, 3, 4]
    everything = await job_positions(pool, job_id)
    assert [m.id for m in seen + replayed + rest] == everything[before:]

    # The same resume through the query string, for clients that cannot set headers.
    async with (
        httpx.AsyncClient(base_url=live.base_url, timeout=WAIT_S) as http,
        http.stream(
            "GET",
            "/api/v2/streams",
            params={"channels": f"job:{job_id}", "last_event_id": str(last_seen)},
            headers=headers,
        ) as response,
    ):
        again = Sse(response)
        await again.opened()
        assert [(await again.next()).id for _ in missed] == missed


async def test_a_viewer_of_one_project_is_refused_the_job_of_another_and_told_why(
    live: Live, client: Client, commands: CommandHandler, admin_id: str
) -> None:
    viewer_id, username, password = await make_user(client)
    viewer = await login(client, username, password)
    project_a = await new_project(client)
    response = await client.post(
        f"/api/v2/projects/{project_a}/members", json={"user_id": viewer_id, "role": "viewer"}
    )
    assert response.status_code == 200, response.text
    project_b = await new_project(client)
    job_b = await submit(commands, project_b, admin_id)

    for channels in (f"job:{job_b}", f"project:{project_a},job:{job_b}", f"project:{project_b}"):
        answer = await refused(live, viewer, channels)
        assert answer.status_code == 404, answer.text
        assert answer.json()["meta"]["code"] == "not_found"
        refused_channel = channels.split(",")[-1]
        assert f"you cannot read {refused_channel}" in answer.json()["error"]

    admin_only = await refused(live, viewer, "admin")
    assert admin_only.status_code == 403, admin_only.text
    assert "you cannot read admin" in admin_only.json()["error"]

    for bad in ("jobs:1", f"job:{job_b[:8]}", ""):
        answer = await refused(live, viewer, bad)
        assert answer.status_code == 400, answer.text
    unknown_job = await refused(live, viewer, f"job:{uuid.uuid4()}")
    assert unknown_job.status_code == 404, unknown_job.text

    anonymous = await refused(live, {}, f"project:{project_a}")
    assert anonymous.status_code == 401

    # What the viewer may read opens (nothing of project B's job comes through it).
    async with stream(live, viewer, f"project:{project_a},gpu,notifications") as opened:
        await start(commands, job_b)
        received = await opened.quiet(1.0)
    assert not [m for m in received if job_b in json.dumps(m.data)]


async def test_a_member_removed_from_a_project_sees_that_then_the_stream_closes(
    live: Live, client: Client, commands: CommandHandler, admin_id: str
) -> None:
    member_id, username, password = await make_user(client)
    member = await login(client, username, password)
    project = await new_project(client)
    granted = await client.post(
        f"/api/v2/projects/{project}/members", json={"user_id": member_id, "role": "viewer"}
    )
    assert granted.status_code == 200, granted.text
    job = await submit(commands, project, admin_id)

    async with (
        stream(live, member, f"job:{job}") as of_job,
        stream(live, member, f"project:{project}") as of_project,
        stream(live, member, "gpu") as unrelated,
    ):
        removed = await client.delete(f"/api/v2/projects/{project}/members/{member_id}")
        assert removed.status_code in (200, 204), removed.text
        seen = await of_project.until("MemberRevoked")
        assert seen[-1].data["data"]["user_id"] == member_id
        # The job's events come after the revocation: the member must not see them.
        await start(commands, job)
        for closed in (of_project, of_job):
            with pytest.raises(AssertionError, match="the stream ended"):
                await closed.quiet(WAIT_S)
            assert any("your access changed" in comment for comment in closed.comments)
        # A stream that depended on nothing revoked stays open.
        assert not [c for c in unrelated.comments if "access" in c]

    for channels in (f"project:{project}", f"job:{job}"):
        answer = await refused(live, member, channels)
        assert answer.status_code == 404, answer.text


async def test_heartbeats_keep_an_idle_stream_alive(live: Live, client: Client) -> None:
    _, username, password = await make_user(client)
    async with stream(live, await login(client, username, password), "notifications") as idle:
        with pytest.raises(TimeoutError):
            await idle.next(timeout_s=HEARTBEAT_S * 3.5)
    assert idle.comments.count("keep-alive") >= 2


async def test_the_gpu_channel_passes_the_monitors_samples_through(
    live: Live, client: Client, settings: Settings
) -> None:
    sample = {"type": "GpuSampled", "host": "node-1", "available": True, "gpus": []}
    publisher = connect(settings.require_redis_url())
    async with stream(live, await admin_headers(client), "gpu") as gpu:
        await publisher.publish(live.feed.gpu_channel, json.dumps(sample))
        message = await gpu.next()
        while message.data.get("host") != "node-1":  # the test worker's own samples
            message = await gpu.next()
    await publisher.aclose()
    assert message.event == "gpu"
    assert message.id is None
    assert message.data == sample


def _asgi_cycles() -> int:
    """Request tasks of the server still running."""
    return sum("run_asgi" in task.get_coro().__qualname__ for task in asyncio.all_tasks())


async def test_a_disconnected_client_leaves_no_subscription_or_task_behind(
    live: Live, client: Client
) -> None:
    headers = await admin_headers(client)
    before = live.feed.subscriber_count
    async with stream(live, headers, "gpu,notifications"), stream(live, headers, "admin"):
        assert live.feed.subscriber_count == before + 2
        assert _asgi_cycles() >= 2
    deadline = time.monotonic() + 5
    while (live.feed.subscriber_count, _asgi_cycles()) != (before, 0):
        assert time.monotonic() < deadline, (live.feed.subscriber_count, _asgi_cycles())
        await asyncio.sleep(0.02)


async def test_the_admin_channel_carries_every_event_without_its_metadata(
    live: Live, client: Client
) -> None:
    async with stream(live, await admin_headers(client), "admin") as everything:
        project_id = await new_project(client)
        created = await everything.until("ProjectCreated")
    message = created[-1]
    assert message.data["channel"] == "admin"
    assert message.data["stream_id"] == f"project-{project_id}"
    assert message.data["data"]["project_id"] == project_id
    assert set(message.data) == {"channel", "stream_id", "type", "position", "recorded_at", "data"}


async def test_the_notifications_channel_delivers_the_callers_own_notifications(
    live: Live, client: Client
) -> None:
    user_id, username, password = await make_user(client)
    other_id, other_name, other_password = await make_user(client)
    headers = await login(client, username, password)
    other = await login(client, other_name, other_password)
    project_id = await new_project(client)
    async with (
        stream(live, headers, "notifications") as mine,
        stream(live, other, "notifications") as theirs,
    ):
        response = await client.post(
            f"/api/v2/projects/{project_id}/members", json={"user_id": user_id, "role": "viewer"}
        )
        assert response.status_code == 200, response.text
        message = await mine.next()
        with pytest.raises(TimeoutError):
            await theirs.next(timeout_s=1.0)
    assert message.event == "notification"
    assert message.id == response.json()["meta"]["position"]
    assert message.data["channel"] == "notifications"
    assert message.data["data"]["kind"] == "member_added"
    assert message.data["data"]["data"]["project_id"] == project_id
    assert other_id not in json.dumps(message.data)


async def test_a_client_too_slow_to_keep_up_is_dropped_rather_than_queued_without_bound(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    cache = Cache(None, key_prefix(settings.instance))
    feed = StreamFeed(
        pool,
        connect(settings.require_redis_url()),
        cache,
        load_read_model("notifications"),
        queue_limit=2,
    )
    slow = feed.subscribe("someone", False, ["gpu"])
    sample = {"type": "message", "channel": feed.gpu_channel.encode(), "data": b"{}"}
    for _ in range(3):
        feed._on_message(sample)
    assert slow.closed_because is not None
    assert feed.subscriber_count == 0
    assert await slow.take() == []
    await feed.redis.aclose()


async def test_without_redis_a_stream_is_refused_with_503_not_500(
    settings: Settings, client: Client
) -> None:
    headers = await admin_headers(client)
    unreachable = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(unreachable)) as cut_off:
        response = await cut_off.get("/api/v2/streams", params={"channels": "gpu"}, headers=headers)
    assert response.status_code == 503, response.text
    assert response.json()["meta"]["code"] == "unavailable"
    assert response.headers["retry-after"]


async def test_a_server_process_freezes_what_start_up_built_out_of_the_collector(
    settings: Settings, projector_worker: None
) -> None:
    """A full collection then walks only what requests create, not the whole started API:
    walking everything stalled every open stream at once."""
    gc.unfreeze()
    try:
        async with AsyncTestClient(app=create_app(settings, freeze_after_start=True)) as client:
            assert (await client.get("/health")).status_code == 200
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
    async with AsyncTestClient(app=create_app(settings)):
        assert gc.get_freeze_count() == 0  # a test's app leaves the collector alone
