"""Projects through HTTP, as a client uses them: envelope, pagination, filters, versions,
read-your-writes and history (the projector runs in a real Dramatiq worker)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]


async def create(client: Client, **fields: Any) -> dict[str, Any]:
    body = {"name": f"project {uuid.uuid4().hex[:8]}", **fields}
    response = await client.post("/api/v2/projects", json=body)
    assert response.status_code == 201, response.text
    envelope = response.json()
    assert envelope["success"] is True
    assert envelope["error"] is None
    return envelope


async def test_a_created_project_is_readable_with_its_version_after_its_position(
    client: Client, admin_id: str
) -> None:
    created = await create(
        client, description="churn model", config={"lr": 0.1}, tags=["nlp", "nlp", "prod"]
    )
    project = created["data"]
    assert project["version"] == 1
    assert project["status"] == "active"
    assert project["tags"] == ["nlp", "prod"]
    assert project["owner_id"] == admin_id
    assert project["members"] == {admin_id: "owner"}
    position = created["meta"]["position"]

    response = await client.get(f"/api/v2/projects/{project['id']}", params={"after": position})
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    read = response.json()["data"]
    assert read == project


async def test_read_your_writes_also_works_with_the_after_header(client: Client) -> None:
    created = await create(client)
    response = await client.get(
        f"/api/v2/projects/{created['data']['id']}",
        headers={"X-After-Position": str(created["meta"]["position"])},
    )
    assert response.status_code == 200


async def test_update_with_if_match_changes_only_the_fields_sent(client: Client) -> None:
    project = (await create(client, description="d", tags=["a"]))["data"]
    response = await client.put(
        f"/api/v2/projects/{project['id']}", json={"name": "renamed"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["data"]["name"] == "renamed"
    assert updated["data"]["description"] == "d"
    assert updated["data"]["version"] == 2
    assert updated["data"]["created_at"] == project["created_at"]
    read = await client.get(
        f"/api/v2/projects/{project['id']}", params={"after": updated["meta"]["position"]}
    )
    assert read.json()["data"]["name"] == "renamed"


async def test_twenty_concurrent_puts_with_one_if_match_let_exactly_one_through(
    client: Client,
) -> None:
    project = (await create(client))["data"]

    async def rename(n: int) -> Any:
        return await client.put(
            f"/api/v2/projects/{project['id']}",
            json={"name": f"name {n}"},
            headers={"If-Match": "1"},
        )

    responses = await asyncio.gather(*(rename(n) for n in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 19
    for conflict in (r for r in responses if r.status_code == 409):
        body = conflict.json()
        assert body["success"] is False
        assert body["meta"]["code"] == "conflict"
        assert body["meta"]["current_version"] == 2


async def test_archive_restore_and_delete(client: Client) -> None:
    project = (await create(client))["data"]
    url = f"/api/v2/projects/{project['id']}"
    archived = await client.post(f"{url}/archive")
    assert archived.status_code == 200
    assert archived.json()["data"]["status"] == "archived"
    refused = await client.put(url, json={"name": "while archived"})
    assert refused.status_code == 409
    assert "archived" in refused.json()["error"]
    restored = await client.put(url, json={"status": "active", "name": "back"})
    assert restored.json()["data"]["status"] == "active"
    deleted = await client.delete(
        url, headers={"If-Match": str(restored.json()["data"]["version"])}
    )
    assert deleted.status_code == 200
    assert deleted.json()["data"]["deleted"] is True
    gone = await client.get(url, params={"after": deleted.json()["meta"]["position"]})
    assert gone.status_code == 404
    assert gone.json()["meta"]["code"] == "not_found"
    again = await client.delete(url)
    assert again.status_code == 404


async def test_history_lists_the_events_oldest_first_with_who_and_where(
    client: Client, admin_id: str
) -> None:
    project = (await create(client))["data"]
    url = f"/api/v2/projects/{project['id']}"
    await client.put(url, json={"description": "v2"}, headers={"User-Agent": "history-test/1.0"})
    await client.post(f"{url}/archive")
    response = await client.get(f"{url}/history")
    assert response.status_code == 200
    body = response.json()
    assert [e["type"] for e in body["data"]] == [
        "ProjectCreated",
        "ProjectUpdated",
        "ProjectArchived",
    ]
    assert [e["version"] for e in body["data"]] == [1, 2, 3]
    assert body["meta"] == {"total": 3, "page": 1, "limit": 50, "has_more": False}
    updated = body["data"][1]
    assert updated["data"] == {"project_id": project["id"], "description": "v2"}
    assert updated["metadata"]["actor"] == admin_id
    assert updated["metadata"]["user_agent"] == "history-test/1.0"
    assert updated["metadata"]["client_ip"]
    assert updated["metadata"]["request_id"]
    second_page = await client.get(f"{url}/history", params={"page": 2, "limit": 2})
    assert [e["version"] for e in second_page.json()["data"]] == [3]


async def test_list_filters_and_paginates(client: Client) -> None:
    marker = uuid.uuid4().hex[:10]
    last = None
    for n in range(5):
        last = await create(client, name=f"{marker} Alpha {n}", tags=[marker, f"n{n % 2}"])
    archived = (await create(client, name=f"{marker} Beta", tags=[marker]))["data"]
    last = (await client.post(f"/api/v2/projects/{archived['id']}/archive")).json()
    after = last["meta"]["position"]

    response = await client.get(
        "/api/v2/projects", params={"tag": marker, "limit": 2, "after": after}
    )
    body = response.json()
    assert body["meta"] == {"total": 6, "page": 1, "limit": 2, "has_more": True}
    assert len(body["data"]) == 2

    third = (
        await client.get("/api/v2/projects", params={"tag": marker, "limit": 2, "page": 3})
    ).json()
    assert third["meta"]["has_more"] is False
    assert len(third["data"]) == 2

    active = (
        await client.get("/api/v2/projects", params={"tag": marker, "status": "active"})
    ).json()
    assert active["meta"]["total"] == 5
    odd = (await client.get("/api/v2/projects", params={"tag": "n1", "q": marker})).json()
    assert {p["name"] for p in odd["data"]} == {f"{marker} Alpha 1", f"{marker} Alpha 3"}
    by_name = (await client.get("/api/v2/projects", params={"q": f"{marker} beTA"})).json()
    assert [p["id"] for p in by_name["data"]] == [archived["id"]]
    by_owner = (
        await client.get("/api/v2/projects", params={"q": marker, "owner_id": "nobody"})
    ).json()
    assert by_owner["meta"]["total"] == 0


async def test_a_wildcard_in_the_name_search_is_taken_literally(client: Client) -> None:
    marker = uuid.uuid4().hex[:10]
    created = await create(client, name=f"{marker} 100% done")
    await create(client, name=f"{marker} 100 done")
    found = (
        await client.get(
            "/api/v2/projects", params={"q": f"{marker} 100%", "after": created["meta"]["position"]}
        )
    ).json()
    assert [p["name"] for p in found["data"]] == [f"{marker} 100% done"]


async def test_the_same_idempotency_key_twice_creates_one_project(
    client: Client, pool: Any
) -> None:
    key = uuid.uuid4().hex
    body = {"name": f"idempotent {key}"}
    first = await client.post("/api/v2/projects", json=body, headers={"Idempotency-Key": key})
    second = await client.post("/api/v2/projects", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json()["data"] == second.json()["data"]
    assert second.json()["meta"]["replayed"] is True
    count = await pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = 'ProjectCreated' AND data->>'name' = $1",
        body["name"],
    )
    assert count == 1
    reused = await client.post(
        "/api/v2/projects", json={"name": "something else"}, headers={"Idempotency-Key": key}
    )
    assert reused.status_code == 422
    assert "Idempotency-Key" in reused.json()["error"]


async def test_every_response_carries_a_request_id(client: Client) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json() == {
        "success": True,
        "data": {"status": "ok"},
        "error": None,
        "meta": None,
    }


async def test_ready_reports_each_dependency(client: Client) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["data"] == {"database": True, "redis": True, "broker": True}


async def test_openapi_lists_the_project_operations(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {
        "ListProjects",
        "CreateProject",
        "GetProject",
        "UpdateProject",
        "DeleteProject",
        "ArchiveProject",
        "GetProjectHistory",
        "Health",
        "Ready",
    } <= operations
