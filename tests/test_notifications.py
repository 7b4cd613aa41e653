"""Notifications: projected from the events they tell about (jobs finishing, memberships,
quality reports with problems), read by their recipient only, marked read through the
recipient's inbox stream, and found again, with the same ids and read states, by a read model
rebuilt from the log."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import dramatiq
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.aggregates import DATASETS, JOBS
from aiplatform.cache import Cache, connect, key_prefix
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.config import Settings
from aiplatform.domain import datasets, inbox, jobs
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.store import AppendResult, EventStore
from aiplatform.projectors.notifications import NotificationsProjector, notifications_channel
from aiplatform.projectors.read_models import (
    ReadModel,
    install,
    install_generation,
    load_read_model,
)
from aiplatform.projectors.runner import catch_up, project_batch
from aiplatform.workers.broker import projector_wake_up
from conftest import login, make_user

Client = AsyncTestClient[Litestar]
URL = "/api/v2/notifications"
WORKER = CommandContext(metadata=EventMetadata(actor="system:worker-1"))


async def wake_projector(_: AppendResult) -> None:
    await asyncio.to_thread(dramatiq.get_broker().enqueue, projector_wake_up())


@pytest.fixture
def commands(pool: asyncpg.Pool) -> CommandHandler:
    """The command path the workers take, waking the projector after each append."""
    return CommandHandler(EventStore(pool), listeners=[wake_projector])


async def person(client: Client) -> tuple[str, dict[str, str]]:
    """A new user: their id and the headers of their session."""
    user_id, username, password = await make_user(client)
    return user_id, await login(client, username, password)


async def notifications(
    client: Client, headers: dict[str, str], after: int, **params: Any
) -> dict[str, Any]:
    """The caller's notifications once the read model has the event at `after` (each try
    waits up to the read-your-writes timeout; a busy machine may need more than one)."""
    for _ in range(3):
        response = await client.get(URL, params={"after": after, **params}, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if not body["meta"].get("stale"):
            return body
    raise AssertionError(f"the read model never got to event {after}: {response.text}")


async def submitted(commands: CommandHandler, submitter: str, name: str = "poet") -> str:
    job_id = str(uuid.uuid4())
    command = jobs.SubmitJob(
        job_id=job_id,
        project_id=str(uuid.uuid4()),
        name=name,
        template="byte-gpt",
        dataset_id=str(uuid.uuid4()),
        dataset_version="v1",
        base_model_id=None,
        hyperparameters={},
    )
    context = CommandContext(metadata=EventMetadata(actor=submitter))
    await commands.handle(JOBS, job_id, command, context, new_stream=True)
    return job_id


async def on_job(commands: CommandHandler, job_id: str, command: Any) -> int:
    result = await commands.handle(JOBS, job_id, command, WORKER)
    assert result.position is not None, command
    return result.position


async def cancelled_job(commands: CommandHandler, submitter: str, name: str) -> int:
    """A pending job of `submitter` cancelled: one notification; the position of its event."""
    job_id = await submitted(commands, submitter, name)
    return await on_job(commands, job_id, jobs.CancelJob(job_id=job_id))


def job_name(notification: dict[str, Any]) -> str:
    """`c` of "Training job `c` was cancelled"."""
    name: str = notification["title"].split("`")[1]
    return name


async def test_a_jobs_submitter_is_told_when_it_succeeds_fails_or_is_cancelled(
    client: Client, commands: CommandHandler
) -> None:
    submitter, headers = await person(client)
    _, bystander_headers = await person(client)
    succeeding = await submitted(commands, submitter, "poet")
    failing = await submitted(commands, submitter, "critic")
    cancelled = await submitted(commands, submitter, "scribe")
    model_id = str(uuid.uuid4())
    for job_id in (succeeding, failing):
        await on_job(
            commands, job_id, jobs.StartAttempt(job_id=job_id, worker="w", devices=["cpu"])
        )
    await on_job(
        commands,
        succeeding,
        jobs.SucceedJob(
            job_id=succeeding,
            model_id=model_id,
            metrics={"val_accuracy": 0.875, "val_loss": 1.23},
            duration_s=3.0,
            resource_usage={},
        ),
    )
    await on_job(
        commands,
        failing,
        jobs.FailJob(job_id=failing, error="CUDA out of memory\nTried to allocate 2 GiB"),
    )
    last = await on_job(commands, cancelled, jobs.CancelJob(job_id=cancelled))
    # What the submitter did themselves is no news to them.
    own = await submitted(commands, submitter, "draft")
    yourself = CommandContext(metadata=EventMetadata(actor=submitter))
    own_cancel = await commands.handle(JOBS, own, jobs.CancelJob(job_id=own), yourself)
    assert own_cancel.position is not None

    body = await notifications(client, headers, own_cancel.position)
    assert body["meta"]["total"] == body["meta"]["unread"] == 3
    newest, failed, succeeded = body["data"]
    assert (newest["kind"], newest["title"]) == (
        "job_cancelled",
        "Training job `scribe` was cancelled",
    )
    assert newest["data"]["job_id"] == cancelled
    assert (failed["kind"], failed["title"], failed["body"]) == (
        "job_failed",
        "Training job `critic` failed",
        "CUDA out of memory",
    )
    assert (succeeded["kind"], succeeded["title"], succeeded["body"]) == (
        "job_succeeded",
        "Training job `poet` succeeded",
        "val_loss 1.23, val_accuracy 0.875",
    )
    assert succeeded["data"]["job_id"] == succeeding
    assert succeeded["data"]["model_id"] == model_id
    assert "project_id" in succeeded["data"]
    assert not any(item["read"] for item in body["data"])
    assert newest["position"] == last
    assert newest["position"] > failed["position"] > succeeded["position"]

    assert (await notifications(client, bystander_headers, last))["meta"]["total"] == 0
    admins = (await notifications(client, {}, last, limit=100))["data"]
    assert not {item["data"].get("job_id") for item in admins} & {succeeding, failing, cancelled}


async def test_a_member_is_told_when_added_moved_to_another_role_and_removed(
    client: Client,
) -> None:
    member, headers = await person(client)
    created = await client.post("/api/v2/projects", json={"name": "atlas"})
    assert created.status_code == 201, created.text
    project_id = created.json()["data"]["id"]
    members = f"/api/v2/projects/{project_id}/members"
    for role in ("developer", "maintainer"):
        granted = await client.post(members, json={"user_id": member, "role": role})
        assert granted.status_code == 200, granted.text
    revoked = await client.delete(f"{members}/{member}")
    assert revoked.status_code == 200, revoked.text

    body = await notifications(client, headers, revoked.json()["meta"]["position"])
    removed, moved, added = body["data"]
    assert (added["kind"], added["title"], added["body"]) == (
        "member_added",
        "Added to project atlas",
        "You were added to project atlas as developer.",
    )
    assert added["data"] == {"project_id": project_id, "role": "developer"}
    assert (moved["kind"], moved["body"]) == (
        "member_role_changed",
        "You are now maintainer in project atlas (was developer).",
    )
    assert (removed["kind"], removed["body"]) == (
        "member_removed",
        "You were removed from project atlas.",
    )


async def test_a_quality_report_with_problems_tells_the_uploader_and_a_clean_one_does_not(
    client: Client, commands: CommandHandler
) -> None:
    uploader, headers = await person(client)
    dataset_id = str(uuid.uuid4())

    def new_version(content: str) -> datasets.NewVersion:
        return datasets.NewVersion(
            message="",
            sha256=content * 64,
            size=10,
            rows=2,
            format="csv",
            blob_key=f"datasets/{dataset_id}/{content}",
            filename="reviews.csv",
            uploaded_by=uploader,
        )

    create = datasets.CreateDataset(
        dataset_id=dataset_id,
        project_id=str(uuid.uuid4()),
        name="reviews",
        first=new_version("a"),
    )
    context = CommandContext(metadata=EventMetadata(actor=uploader))
    await commands.handle(DATASETS, dataset_id, create, context, new_stream=True)
    commit = datasets.CommitVersion(
        dataset_id=dataset_id, parent_version=None, new=new_version("b")
    )
    await commands.handle(DATASETS, dataset_id, commit, context)
    problems = ["12 duplicate rows", "column `stars` is constant", "1 row has no label"]
    for version, found in (("v1", problems), ("v2", [])):
        report = {"rows": 2, "problems": found}
        record = datasets.RecordQuality(dataset_id=dataset_id, version=version, report=report)
        result = await commands.handle(DATASETS, dataset_id, record, WORKER)
        assert result.position is not None

    body = await notifications(client, headers, result.position)
    assert body["meta"]["total"] == 1
    (reported,) = body["data"]
    assert (reported["kind"], reported["title"], reported["body"]) == (
        "dataset_quality_problems",
        "Dataset `reviews` v1 has 3 quality problems",
        "12 duplicate rows (and 2 more)",
    )
    assert reported["data"]["dataset_id"] == dataset_id
    assert reported["data"]["version"] == "v1"


async def test_the_unread_filter_pages_and_marking_read_one_or_all(
    client: Client, anonymous: Client, commands: CommandHandler, pool: asyncpg.Pool
) -> None:
    user, headers = await person(client)
    _, stranger_headers = await person(client)
    for name in ("a", "b"):
        await cancelled_job(commands, user, name)
    last = await cancelled_job(commands, user, "c")

    first = await notifications(client, headers, last, limit=2)
    assert first["meta"] == {
        "total": 3,
        "page": 1,
        "limit": 2,
        "has_more": True,
        "unread": 3,
    }
    second = await notifications(client, headers, last, limit=2, page=2)
    assert (len(second["data"]), second["meta"]["has_more"]) == (1, False)
    newest = first["data"][0]
    assert newest["title"] == "Training job `c` was cancelled"

    read_url = f"{URL}/{newest['id']}/read"
    marked = await client.post(read_url, headers=headers)
    assert marked.status_code == 200, marked.text
    assert marked.json()["data"]["read"] is True
    position = marked.json()["meta"]["position"]
    again = await client.post(read_url, headers=headers)
    assert again.status_code == 200, again.text
    assert "position" not in again.json()["meta"], "a second mark records nothing"
    assert again.json()["meta"]["version"] == marked.json()["meta"]["version"]

    unread = await notifications(client, headers, position, unread="true")
    assert [item["title"] for item in unread["data"]] == [
        "Training job `b` was cancelled",
        "Training job `a` was cancelled",
    ]
    assert unread["meta"]["total"] == unread["meta"]["unread"] == 2
    read = await notifications(client, headers, position, unread="false")
    assert [item["id"] for item in read["data"]] == [newest["id"]]
    assert read["meta"]["unread"] == 2

    for someone_else in (stranger_headers, {}):  # {}: the admin's session
        refused = await client.post(read_url, headers=someone_else)
        assert refused.status_code == 404, refused.text
    unknown = await client.post(f"{URL}/{uuid.uuid4()}/read", headers=headers)
    assert unknown.status_code == 404, unknown.text

    everything = await client.post(f"{URL}/read-all", headers=headers)
    assert everything.status_code == 200, everything.text
    assert everything.json()["data"]["up_to_position"] == newest["position"] == last
    later = await cancelled_job(commands, user, "d")
    after_all = await notifications(client, headers, later)
    assert [(job_name(item), item["read"]) for item in after_all["data"]] == [
        ("d", False),
        ("c", True),
        ("b", True),
        ("a", True),
    ]
    assert after_all["meta"]["unread"] == 1
    assert (await notifications(client, stranger_headers, later))["meta"]["total"] == 0

    stream = await EventStore(pool).read_stream(inbox.stream_id(user))
    assert [recorded.event_type for recorded in stream] == [
        "NotificationRead",
        "AllNotificationsRead",
    ]
    assert all(recorded.metadata.actor == user for recorded in stream)


async def test_reading_all_with_nothing_unread_records_nothing(client: Client) -> None:
    _, headers = await person(client)
    response = await client.post(f"{URL}/read-all", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"up_to_position": None}
    assert "position" not in response.json()["meta"]


async def test_anonymous_callers_are_refused(anonymous: Client) -> None:
    for method, url in (
        ("GET", URL),
        ("POST", f"{URL}/{uuid.uuid4()}/read"),
        ("POST", f"{URL}/read-all"),
    ):
        response = await anonymous.request(method, url)
        assert response.status_code == 401, response.text


async def test_a_read_model_rebuilt_from_the_log_has_the_same_ids_and_read_states(
    client: Client, commands: CommandHandler, pool: asyncpg.Pool
) -> None:
    user, headers = await person(client)
    for name in ("a", "b", "c"):
        last = await cancelled_job(commands, user, name)
    listed = (await notifications(client, headers, last))["data"]
    marked = await client.post(f"{URL}/{listed[1]['id']}/read", headers=headers)
    assert marked.status_code == 200, marked.text
    unseen = await cancelled_job(commands, user, "d")
    everything = await client.post(f"{URL}/read-all", params={"after": unseen}, headers=headers)
    assert everything.status_code == 200, everything.text
    last = await cancelled_job(commands, user, "e")
    live = (await notifications(client, headers, last))["data"]
    assert [item["read"] for item in live] == [False, True, True, True, True]

    # A changed projection file gets a fresh schema, filled from position zero. Under a name of
    # its own: a changed version of the platform's read model would be switched in by the run's
    # worker, under the feet of the tests that follow.
    current = load_read_model("notifications")
    rebuilt = NotificationsProjector(
        ReadModel(name=f"notifications_{uuid.uuid4().hex[:8]}", ddl=current.ddl)
    )
    async with pool.acquire() as connection:
        await install(connection, rebuilt.read_model)
    try:
        await catch_up(pool, rebuilt, Cache(None))
        before, after = await both_tables(pool, user, NotificationsProjector(), rebuilt)
    finally:
        await drop_read_model(pool, rebuilt.read_model)
    assert len(before) == 5
    assert after == before


async def both_tables(
    pool: asyncpg.Pool, user: str, *projectors: NotificationsProjector
) -> list[list[tuple[Any, ...]]]:
    columns = "id, user_id, kind, title, body, data::text, created_at, position, read"
    return [
        [
            tuple(row)
            for row in await pool.fetch(
                f"SELECT {columns} FROM {projector.table} WHERE user_id = $1 ORDER BY position",
                user,
            )
        ]
        for projector in projectors
    ]


async def drop_read_model(pool: asyncpg.Pool, read_model: ReadModel) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(f"DROP SCHEMA {read_model.schema} CASCADE")
        await connection.execute(
            "DELETE FROM read_model_versions WHERE checkpoint = $1", read_model.checkpoint
        )
        await connection.execute(
            "DELETE FROM projection_checkpoints WHERE projection = $1", read_model.checkpoint
        )


async def test_a_version_being_built_publishes_nothing_and_keeps_nothing_to_publish(
    client: Client, commands: CommandHandler, pool: asyncpg.Pool
) -> None:
    user, headers = await person(client)
    last = await cancelled_job(commands, user, "a")
    await notifications(client, headers, last)
    served = NotificationsProjector(
        ReadModel(
            name=f"notifications_{uuid.uuid4().hex[:8]}", ddl=load_read_model("notifications").ddl
        )
    )
    async with pool.acquire() as connection:
        await install(connection, served.read_model)
        building = NotificationsProjector(await install_generation(connection, served.read_model))
    try:
        while await project_batch(pool, building, Cache(None), batch_size=10_000):
            pass
        (_, mine) = await both_tables(pool, user, served, building)
        assert len(mine) == 1
        assert building._unsent == {}
    finally:
        for projector in (served, building):
            await drop_read_model(pool, projector.read_model)


async def test_the_recipients_channel_hears_of_new_and_read_notifications(
    client: Client, commands: CommandHandler, settings: Settings
) -> None:
    user, headers = await person(client)
    cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))
    assert cache.client is not None
    subscription = cache.client.pubsub()
    await subscription.subscribe(cache.channel(notifications_channel(user)))
    try:
        cancelled = await cancelled_job(commands, user, "a")
        (notification,) = (await notifications(client, headers, cancelled))["data"]
        marked = await client.post(f"{URL}/{notification['id']}/read", headers=headers)
        assert marked.status_code == 200, marked.text
        heard = [await next_message(subscription) for _ in range(2)]
    finally:
        await subscription.aclose()
        await cache.close()
    assert heard == [
        {"position": cancelled, "type": "notification", "id": notification["id"]},
        {"position": marked.json()["meta"]["position"], "type": "read", "id": notification["id"]},
    ]


async def next_message(subscription: Any) -> Any:
    async with asyncio.timeout(15):
        while True:
            message = await subscription.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                return msgspec.json.decode(message["data"])
