"""Experiments inside projects: create, read, list, update, start, history, and who may."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from conftest import login, make_user
from training_support import text_corpus, upload_dataset

Client = AsyncTestClient[Litestar]


async def new_project(client: Client, headers: dict[str, str] | None = None) -> str:
    response = await client.post("/api/v2/projects", json={"name": "exp home"}, headers=headers)
    assert response.status_code == 201
    project_id: str = response.json()["data"]["id"]
    return project_id


async def create(client: Client, project_id: str, **fields: Any) -> Any:
    return await client.post(
        "/api/v2/experiments", json={"project_id": project_id, "name": "baseline", **fields}
    )


async def test_an_experiment_is_created_read_updated_started_and_listed(
    client: Client, admin_id: str
) -> None:
    project_id = await new_project(client)
    created = await create(client, project_id, task_type="generation", config={"lr": 0.001})
    assert created.status_code == 201, created.text
    experiment = created.json()["data"]
    assert experiment["status"] == "draft"
    assert experiment["created_by"] == admin_id
    url = f"/api/v2/experiments/{experiment['id']}"
    assert (await client.get(url)).json()["data"] == experiment

    # Starting trains: the config names the template and the dataset.
    dataset_id = await upload_dataset(client, project_id, text_corpus(4_000), "corpus.txt")
    config = {"template": "char-lm", "dataset_id": dataset_id, "hyperparameters": {"epochs": 1}}
    updated = await client.put(
        url, json={"config": config, "task_type": "lm"}, headers={"If-Match": "1"}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["config"] == config
    stale = await client.put(url, json={"name": "x"}, headers={"If-Match": "1"})
    assert stale.status_code == 409
    assert stale.json()["meta"]["current_version"] == 2

    started = await client.post(f"{url}/start")
    assert started.status_code == 200, started.text
    assert started.json()["data"]["status"] == "running"
    again = await client.post(f"{url}/start")
    assert again.status_code == 409
    frozen = await client.put(url, json={"config": {"lr": 1}})
    assert frozen.status_code == 409

    listed = await client.get(
        "/api/v2/experiments",
        params={"project_id": project_id, "after": started.json()["meta"]["position"]},
    )
    assert listed.status_code == 200
    [row] = listed.json()["data"]
    assert row["status"] == "running"
    assert row["config"] == config
    history = (await client.get(f"{url}/history")).json()["data"]
    assert [e["type"] for e in history] == [
        "ExperimentCreated",
        "ExperimentUpdated",
        "ExperimentStarted",
    ]

    # No training worker runs here: the job waits. Cancelling it ends the experiment.
    job_id = history[-1]["data"]["job_id"]
    for experiment_id, expected in ((experiment["id"], [job_id]), (str(uuid.uuid4()), [])):
        jobs = await client.get(
            "/api/v2/training/jobs",
            params={
                "project_id": project_id,
                "experiment_id": experiment_id,
                "after": started.json()["meta"]["position"],
            },
        )
        assert jobs.status_code == 200, jobs.text
        assert [job["id"] for job in jobs.json()["data"]] == expected
        assert jobs.json()["meta"]["total"] == len(expected)
    cancelled = await client.post(f"/api/v2/training/jobs/{job_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert (await client.get(url)).json()["data"]["status"] == "cancelled"


async def test_who_may_create_and_read_experiments(client: Client, anonymous: Client) -> None:
    _, owner_name, owner_password = await make_user(client)
    viewer_id, viewer_name, viewer_password = await make_user(client)
    _, stranger_name, stranger_password = await make_user(client)
    owner = await login(anonymous, owner_name, owner_password)
    viewer = await login(anonymous, viewer_name, viewer_password)
    stranger = await login(anonymous, stranger_name, stranger_password)
    project_id = await new_project(anonymous, owner)
    await anonymous.post(
        f"/api/v2/projects/{project_id}/members",
        json={"user_id": viewer_id, "role": "viewer"},
        headers=owner,
    )
    body = {"project_id": project_id, "name": "e"}
    assert (
        await anonymous.post("/api/v2/experiments", json=body, headers=viewer)
    ).status_code == 403
    assert (
        await anonymous.post("/api/v2/experiments", json=body, headers=stranger)
    ).status_code == 404
    created = await anonymous.post("/api/v2/experiments", json=body, headers=owner)
    assert created.status_code == 201
    url = f"/api/v2/experiments/{created.json()['data']['id']}"
    assert (await anonymous.get(url, headers=viewer)).status_code == 200
    assert (await anonymous.get(url, headers=stranger)).status_code == 404
    assert (await anonymous.post(f"{url}/start", headers=viewer)).status_code == 403
    listing = await anonymous.get(
        "/api/v2/experiments", params={"project_id": project_id}, headers=stranger
    )
    assert listing.status_code == 404


async def test_bad_experiment_input_is_named(client: Client) -> None:
    project_id = await new_project(client)
    missing_project = await client.post("/api/v2/experiments", json={"name": "x"})
    assert missing_project.status_code in (400, 403, 422)
    bad_uuid = await client.post("/api/v2/experiments", json={"project_id": "nope", "name": "x"})
    assert bad_uuid.status_code == 400
    assert "project_id" in bad_uuid.json()["error"]
    unknown_project = await create(client, str(uuid.uuid4()))
    assert unknown_project.status_code == 404
    empty_name = await create(client, project_id, name="")
    assert empty_name.status_code == 422
    assert "name" in empty_name.json()["error"]
    running = await client.put(
        f"/api/v2/experiments/{(await create(client, project_id)).json()['data']['id']}",
        json={"status": "running"},
    )
    assert running.status_code == 422
    assert (await client.get(f"/api/v2/experiments/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/api/v2/experiments")).status_code == 400


async def test_an_archived_project_takes_no_new_experiments(client: Client) -> None:
    project_id = await new_project(client)
    await client.post(f"/api/v2/projects/{project_id}/archive")
    refused = await create(client, project_id)
    assert refused.status_code == 409
    assert "archived" in refused.json()["error"]
