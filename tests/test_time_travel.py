"""Time travel: `GET …/{id}?as_of=` shows a resource as it was; `…/{id}/history` lists its
events, page by page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.api.as_of import AsOf, parse_as_of
from aiplatform.api.errors import RequestError
from aiplatform.commands import CommandHandler
from aiplatform.domain import jobs
from aiplatform.domain.jobs import JobCheckpointed
from conftest import login, make_user
from test_jobs_read import Run, commands, read_after, submit  # noqa: F401  (`commands` is a fixture)
from test_models import register, safetensors_bytes

Client = AsyncTestClient[Litestar]


async def _project(client: Client, name: str) -> dict[str, Any]:
    response = await client.post("/api/v2/projects", json={"name": name})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _history(client: Client, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"{path}/history", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _rename(client: Client, project_id: str, name: str) -> int:
    response = await client.put(f"/api/v2/projects/{project_id}", json={"name": name})
    assert response.status_code == 200, response.text
    position: int = response.json()["meta"]["position"]
    return position


async def test_a_project_renamed_twice_shows_the_middle_name_between_the_renames(
    client: Client,
) -> None:
    project = await _project(client, "first name")
    await _rename(client, project["id"], "middle name")
    await _rename(client, project["id"], "last name")
    events = (await _history(client, f"/api/v2/projects/{project['id']}"))["data"]
    assert [e["type"] for e in events] == ["ProjectCreated", "ProjectUpdated", "ProjectUpdated"]
    first_rename = datetime.fromisoformat(events[1]["recorded_at"])
    second_rename = datetime.fromisoformat(events[2]["recorded_at"])
    assert first_rename < second_rename
    between = first_rename + (second_rename - first_rename) / 2

    response = await client.get(
        f"/api/v2/projects/{project['id']}", params={"as_of": between.isoformat()}
    )

    assert response.status_code == 200, response.text
    past = response.json()
    assert past["data"]["name"] == "middle name"
    assert past["data"]["version"] == 2
    assert past["data"]["updated_at"] == events[1]["recorded_at"]
    assert past["meta"]["position"] == events[1]["position"]
    now = await read_after(client, f"/api/v2/projects/{project['id']}", events[2]["position"])
    assert now["data"]["name"] == "last name"


async def test_as_of_a_position_shows_the_state_after_that_event(client: Client) -> None:
    project = await _project(client, "alpha")
    renamed_at = await _rename(client, project["id"], "beta")
    await client.post(f"/api/v2/projects/{project['id']}/archive")
    path = f"/api/v2/projects/{project['id']}"

    at_rename = (await client.get(path, params={"as_of": renamed_at})).json()["data"]
    just_before = (await client.get(path, params={"as_of": renamed_at - 1})).json()["data"]

    assert (at_rename["name"], at_rename["status"]) == ("beta", "active")
    assert (just_before["name"], just_before["status"]) == ("alpha", "active")


async def test_as_of_before_the_resource_existed_is_404_and_a_bad_as_of_is_400(
    client: Client,
) -> None:
    project = await _project(client, "newborn")
    created = (await _history(client, f"/api/v2/projects/{project['id']}"))["data"][0]
    before = datetime.fromisoformat(created["recorded_at"]) - timedelta(seconds=1)
    path = f"/api/v2/projects/{project['id']}"

    too_early = await client.get(path, params={"as_of": before.isoformat()})
    by_position = await client.get(path, params={"as_of": created["position"] - 1})
    bad = await client.get(path, params={"as_of": "last tuesday"})

    assert too_early.status_code == 404
    assert "did not exist yet" in too_early.json()["error"]
    assert by_position.status_code == 404
    assert bad.status_code == 400
    assert bad.json()["meta"]["fields"][0]["field"] == "as_of"


async def test_as_of_needs_the_same_access_as_the_present(
    client: Client, anonymous: Client
) -> None:
    project = await _project(client, "private")
    _, username, password = await make_user(client)
    stranger = await login(anonymous, username, password)
    response = await anonymous.get(
        f"/api/v2/projects/{project['id']}", params={"as_of": "1"}, headers=stranger
    )
    assert response.status_code == 404
    assert "did not exist yet" not in response.json()["error"]


async def _as_of(client: Client, path: str, as_of: object) -> dict[str, Any]:
    response = await client.get(path, params={"as_of": str(as_of)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_experiment_as_of_and_its_history(client: Client) -> None:
    project = await _project(client, "lab")
    created = await client.post(
        "/api/v2/experiments", json={"project_id": project["id"], "name": "baseline"}
    )
    assert created.status_code == 201, created.text
    path = f"/api/v2/experiments/{created.json()['data']['id']}"
    renamed = await client.put(path, json={"name": "baseline, tuned"})
    assert renamed.status_code == 200, renamed.text

    then = await _as_of(client, path, created.json()["meta"]["position"])
    later = await _as_of(client, path, renamed.json()["meta"]["position"])
    first_page = await _history(client, path, limit=1)
    second_page = await _history(client, path, limit=1, page=2)

    assert then["data"]["name"] == "baseline"
    assert later["data"]["name"] == "baseline, tuned"
    assert first_page["meta"] == {"total": 2, "page": 1, "limit": 1, "has_more": True}
    assert [e["type"] for e in first_page["data"] + second_page["data"]] == [
        "ExperimentCreated",
        "ExperimentUpdated",
    ]


async def test_a_dataset_as_of_its_first_version_and_its_history(client: Client) -> None:
    project = await _project(client, "data")
    created = await client.post(
        "/api/v2/datasets",
        data={"project_id": project["id"], "name": "churn"},
        files={"file": ("d.csv", b"id,label\n1,a\n", "text/csv")},
    )
    assert created.status_code == 201, created.text
    path = f"/api/v2/datasets/{created.json()['data']['id']}"
    second = await client.post(
        f"{path}/versions", files={"file": ("d.csv", b"id,label\n1,a\n2,b\n", "text/csv")}
    )
    assert second.status_code == 201, second.text

    then = await _as_of(client, path, created.json()["meta"]["position"])
    now = await _as_of(client, path, second.json()["meta"]["position"])
    history = await _history(client, path)

    assert [v["version"] for v in then["data"]["versions"]] == ["v1"]
    assert [v["version"] for v in now["data"]["versions"]] == ["v1", "v2"]
    assert then["data"]["latest_version"] == "v1"
    assert [e["type"] for e in history["data"]][:2] == ["DatasetCreated", "DatasetVersionCommitted"]


async def test_a_model_as_of_before_its_promotion_and_its_history(client: Client) -> None:
    project = await _project(client, "registry")
    registered = await register(client, project["id"], "mlp", safetensors_bytes([1.0]))
    assert registered.status_code == 201, registered.text
    path = f"/api/v2/models/{registered.json()['data']['id']}"
    promoted = await client.put(path, json={"stage": "staging"})
    assert promoted.status_code == 200, promoted.text

    then = await _as_of(client, path, registered.json()["meta"]["position"])
    now = await _as_of(client, path, promoted.json()["meta"]["position"])
    history = await _history(client, path)

    assert (then["data"]["stage"], now["data"]["stage"]) == ("none", "staging")
    assert then["meta"]["position"] == registered.json()["meta"]["position"]
    assert [e["type"] for e in history["data"]] == ["ModelRegistered", "ModelStageChanged"]


async def test_a_user_as_of_before_a_profile_change_and_their_history(client: Client) -> None:
    user_id, _, _ = await make_user(client)
    path = f"/api/v2/users/{user_id}"
    registered = (await _history(client, path))["data"][0]
    changed = await client.put(path, json={"full_name": "Ada Lovelace"})
    assert changed.status_code == 200, changed.text

    then = await _as_of(client, path, registered["position"])
    now = await _as_of(client, path, changed.json()["meta"]["position"])

    assert (then["data"]["full_name"], now["data"]["full_name"]) == ("", "Ada Lovelace")
    assert then["data"]["version"] == 1
    assert [e["type"] for e in (await _history(client, path))["data"]] == [
        "UserRegistered",
        "UserUpdated",
    ]


async def test_a_role_as_of_and_its_history(client: Client) -> None:
    name = f"auditor-{uuid.uuid4().hex[:8]}"
    created = await client.post(
        "/api/v2/roles", json={"name": name, "permissions": ["project:read"]}
    )
    assert created.status_code == 201, created.text
    path = f"/api/v2/roles/{name}"
    position = created.json()["meta"]["position"]

    then = await _as_of(client, path, position)
    before = await client.get(path, params={"as_of": position - 1})
    history = await _history(client, path)
    builtin = await client.get("/api/v2/roles/viewer")

    assert then["data"]["permissions"] == ["project:read"]
    assert before.status_code == 404
    assert "did not exist yet" in before.json()["error"]
    assert [e["type"] for e in history["data"]] == ["RoleCreated"]
    assert builtin.json()["data"]["builtin"] is True


async def test_a_job_as_of_its_last_event_matches_its_read_model_and_earlier_is_earlier(
    client: Client,
    commands: CommandHandler,  # noqa: F811  (the fixture imported above)
    admin_id: str,
) -> None:
    project = await _project(client, "training")
    run: Run = await submit(client, commands, project["id"], submitted_by=admin_id)
    submitted_at = run.position
    await run.start()
    started_at = run.position
    await run.progress(10, 100)
    await run.metrics(loss=([5, 10], [0.9, 0.7]))
    await run.log("epoch 0", "still going")
    await run.record(JobCheckpointed(job_id=run.job_id, step=10, epoch=0, path="ckpt/10"))
    await run.progress(20, 100)
    await run.command(jobs.CancelJob(job_id=run.job_id))

    present = (await run.read())["data"]
    past = await _as_of(client, run.url, run.position)
    at_start = await _as_of(client, run.url, started_at)
    at_submission = await _as_of(client, run.url, submitted_at)

    assert past["data"] == present
    assert (at_start["data"]["status"], at_start["data"]["step"]) == ("running", 0)
    assert at_start["data"]["latest_metrics"] == {}
    assert at_submission["data"]["status"] == "pending"
    assert at_submission["data"]["devices"] == []
    history = await _history(client, run.url, limit=3, page=1)
    assert [e["type"] for e in history["data"]] == ["JobSubmitted", "JobStarted", "JobProgressed"]
    assert history["data"][1]["data"]["accelerator"] == "cpu"
    assert history["meta"]["total"] == past["data"]["version"]
    assert history["meta"]["has_more"] is True


@given(st.datetimes(timezones=st.timezones()))
def test_any_iso_time_is_read_as_the_same_instant(moment: datetime) -> None:
    parsed = parse_as_of(moment.isoformat())
    assert parsed is not None
    assert parsed.time is not None
    # Wall time and offset, not `==`: times in a zone's repeated hour never equal another zone's.
    assert parsed.time.replace(tzinfo=None) == moment.replace(tzinfo=None)
    assert parsed.time.utcoffset() == moment.utcoffset()
    assert parsed.position is None


@given(st.datetimes())
def test_a_time_without_an_offset_is_utc(moment: datetime) -> None:
    parsed = parse_as_of(moment.isoformat())
    assert parsed is not None
    assert parsed.time == moment.replace(tzinfo=UTC)


@given(st.integers(min_value=0))
def test_an_integer_is_a_position(position: int) -> None:
    assert parse_as_of(str(position)) == AsOf(position=position)


@given(st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Nd"]), max_size=30))
def test_text_without_digits_is_refused_naming_as_of(text: str) -> None:
    with pytest.raises(RequestError) as refused:
        parse_as_of(text)
    assert refused.value.field == "as_of"
    assert refused.value.status_code == 400


@pytest.mark.parametrize(
    "resource",
    ["projects", "experiments", "datasets", "models", "training/jobs", "users"],
)
async def test_the_history_of_something_that_never_existed_is_404(
    client: Client, resource: str
) -> None:
    response = await client.get(f"/api/v2/{resource}/{uuid.uuid4()}/history")
    assert response.status_code == 404, response.text
    assert response.json()["meta"]["code"] == "not_found"


async def test_the_history_of_a_role_that_never_existed_is_404(client: Client) -> None:
    response = await client.get("/api/v2/roles/no-such-role/history")
    assert response.status_code == 404, response.text
