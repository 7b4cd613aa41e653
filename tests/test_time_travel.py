"""Time travel: `GET …/{id}?as_of=` shows a resource as it was; `…/{id}/history` lists its
events, page by page."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from tests.conftest import login, make_user

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
    now = await client.get(
        f"/api/v2/projects/{project['id']}", params={"after": events[2]["position"]}
    )
    assert now.json()["data"]["name"] == "last name"


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
