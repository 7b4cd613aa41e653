"""Bad input gets a clear 4xx in the envelope that says what is wrong, never a 500, and
stores nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def nothing_stored(pool: asyncpg.Pool) -> AsyncIterator[None]:
    before = await pool.fetchval("SELECT count(*) FROM events")
    yield
    assert await pool.fetchval("SELECT count(*) FROM events") == before


def assert_error(
    response: Any, status: int, code: str, mentions: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["meta"]["code"] == code
    assert "Traceback" not in response.text
    if mentions is not None:
        assert mentions in body["error"], body["error"]
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 42}, "name"),
        ({"name": "ok", "tags": "not-a-list"}, "tags"),
        ({"name": "ok", "tags": [""]}, "tags"),
        ({"name": "ok", "config": []}, "config"),
        ({"name": "ok", "owner_id": "someone-else"}, "owner_id"),
        ({"description": "no name"}, "name"),
    ],
)
async def test_invalid_project_fields_are_named(
    client: Client, nothing_stored: None, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v2/projects", json=body)
    error = assert_error(response, 422, "validation_error", mentions=field)
    assert any(
        field in (f["field"] or "") or field in f["message"] for f in error["meta"]["fields"]
    )


async def test_a_name_of_255_characters_is_fine(client: Client) -> None:
    response = await client.post("/api/v2/projects", json={"name": "x" * 255})
    assert response.status_code == 201


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b"null"])
async def test_a_body_that_is_not_a_json_object_is_a_400(
    client: Client, nothing_stored: None, content: bytes
) -> None:
    response = await client.post(
        "/api/v2/projects", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert_error(response, response.status_code, "validation_error")


async def test_an_oversized_body_is_a_413(client: Client, nothing_stored: None) -> None:
    body = {"name": "big", "description": "x" * 9000, "config": {"blob": "y" * 2_000_000}}
    response = await client.post("/api/v2/projects", json=body)
    assert_error(response, 413, "too_large")


async def test_a_bad_uuid_in_the_path_is_not_a_server_error(client: Client) -> None:
    for method in ("get", "put", "delete"):
        kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "put" else {}
        response = await getattr(client, method)("/api/v2/projects/not-a-uuid", **kwargs)
        assert response.status_code in (400, 404), response.text
        assert response.json()["success"] is False


async def test_unknown_ids_are_404(client: Client, nothing_stored: None) -> None:
    missing = uuid.uuid4()
    assert_error(await client.get(f"/api/v2/projects/{missing}"), 404, "not_found", str(missing))
    assert_error(
        await client.put(f"/api/v2/projects/{missing}", json={"name": "x"}), 404, "not_found"
    )
    assert_error(await client.delete(f"/api/v2/projects/{missing}"), 404, "not_found")
    assert_error(await client.post(f"/api/v2/projects/{missing}/archive"), 404, "not_found")
    assert_error(await client.get(f"/api/v2/projects/{missing}/history"), 404, "not_found")


async def test_a_stale_version_is_a_409_with_the_current_version(client: Client) -> None:
    created = (await client.post("/api/v2/projects", json={"name": "stale"})).json()["data"]
    url = f"/api/v2/projects/{created['id']}"
    renamed = await client.put(url, json={"name": "v2"}, headers={"If-Match": "1"})
    assert renamed.status_code == 200
    stale = await client.put(url, json={"name": "v3"}, headers={"If-Match": "1"})
    body = assert_error(stale, 409, "conflict")
    assert body["meta"]["current_version"] == 2
    stale_delete = await client.delete(url, headers={"If-Match": "1"})
    assert assert_error(stale_delete, 409, "conflict")["meta"]["current_version"] == 2
    after = renamed.json()["meta"]["position"]
    assert (await client.get(url, params={"after": after})).json()["data"]["name"] == "v2"


async def test_a_malformed_if_match_is_a_400(client: Client) -> None:
    created = (await client.post("/api/v2/projects", json={"name": "if-match"})).json()["data"]
    response = await client.put(
        f"/api/v2/projects/{created['id']}", json={"name": "x"}, headers={"If-Match": "abc"}
    )
    assert_error(response, 400, "validation_error", "If-Match")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"status": "deleted"}, "status"),
        ({"after": -1}, "after"),
    ],
)
async def test_bad_list_parameters_are_named(
    client: Client, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/v2/projects", params=params)
    assert response.status_code == 400, response.text
    assert_error(response, 400, "validation_error", field)


async def test_an_unknown_route_and_a_wrong_method_answer_in_the_envelope(client: Client) -> None:
    assert_error(await client.get("/api/v2/nothing-here"), 404, "not_found")
    response = await client.patch("/api/v2/projects", json={})
    assert response.status_code == 405
    assert response.json()["success"] is False


async def test_an_idempotency_key_that_is_too_long_is_refused(
    client: Client, nothing_stored: None
) -> None:
    response = await client.post(
        "/api/v2/projects", json={"name": "x"}, headers={"Idempotency-Key": "k" * 300}
    )
    assert_error(response, 400, "validation_error", "Idempotency-Key")
