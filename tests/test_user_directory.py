"""GET users/directory: any logged-in user finds others by name (to add them to a project) and
names the ids they know, and reads nothing else of theirs."""

from __future__ import annotations

import uuid

from litestar import Litestar
from litestar.testing import AsyncTestClient

from conftest import login, make_user

Client = AsyncTestClient[Litestar]
URL = "/api/v2/users/directory"


async def test_a_user_finds_others_by_part_of_their_name_and_sees_only_names(
    client: Client,
) -> None:
    found_id, found_name, _ = await make_user(client)
    _, name, password = await make_user(client)
    position = (await client.get(f"/api/v2/users/{found_id}/history")).json()["data"][-1][
        "position"
    ]
    headers = await login(client, name, password)
    response = await client.get(
        URL, params={"q": found_name[3:].upper(), "after": position}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"id": found_id, "username": found_name, "full_name": ""}]


async def test_ids_are_named_and_deactivated_users_are_not_offered(client: Client) -> None:
    gone_id, gone_name, _ = await make_user(client)
    kept_id, kept_name, password = await make_user(client)
    changed = await client.put(f"/api/v2/users/{gone_id}", json={"active": False})
    assert changed.status_code == 200, changed.text
    position = changed.json()["meta"]["position"]
    headers = await login(client, kept_name, password)
    searched = await client.get(URL, params={"q": gone_name, "after": position}, headers=headers)
    assert searched.json()["data"] == []
    named = await client.get(
        URL,
        params={"ids": f"{gone_id},{kept_id},{uuid.uuid4()}", "after": position},
        headers=headers,
    )
    assert sorted(entry["username"] for entry in named.json()["data"]) == sorted(
        [gone_name, kept_name]
    )


async def test_wildcards_in_the_search_are_plain_text(client: Client) -> None:
    _, name, password = await make_user(client)
    headers = await login(client, name, password)
    response = await client.get(URL, params={"q": "%_%"}, headers=headers)
    assert response.status_code == 200
    assert response.json()["data"] == []


async def test_bad_ids_are_refused_plainly_and_strangers_are_not_served(
    client: Client, anonymous: Client
) -> None:
    refused = await client.get(URL, params={"ids": "not-a-uuid"})
    assert refused.status_code == 400
    assert "ids" in refused.json()["error"]
    assert (await anonymous.get(URL)).status_code == 401


async def test_the_admins_user_list_includes_a_user_just_created_when_asked_after_it(
    client: Client,
) -> None:
    created = await client.post(
        "/api/v2/users",
        json={
            "username": f"n{uuid.uuid4().hex[:10]}",
            "email": "n@example.com",
            "password": "pw-12345678ab",
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()["data"]
    listed = await client.get(
        "/api/v2/users",
        params={"q": user["username"], "after": created.json()["meta"]["position"]},
    )
    assert [entry["id"] for entry in listed.json()["data"]] == [user["id"]]
