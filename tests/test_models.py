"""The model registry: register artifacts, versions per name, stages, download."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.config import Settings
from conftest import login, make_user

Client = AsyncTestClient[Litestar]


def safetensors_bytes(values: list[float]) -> bytes:
    data = struct.pack(f"<{len(values)}f", *values)
    header = json.dumps(
        {"weight": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + data


async def new_project(client: Client) -> str:
    project_id: str = (await client.post("/api/v2/projects", json={"name": "models"})).json()[
        "data"
    ]["id"]
    return project_id


async def register(
    client: Client, project_id: str, name: str, artifact: bytes, **fields: str
) -> Any:
    return await client.post(
        "/api/v2/models",
        data={"project_id": project_id, "name": name, **fields},
        files={"file": ("weights.safetensors", artifact, "application/octet-stream")},
    )


async def test_register_version_promote_demote_and_download(client: Client) -> None:
    project_id = await new_project(client)
    first_bytes = safetensors_bytes([1.0, 2.0, 3.0])
    first = await register(
        client,
        project_id,
        "churn-mlp",
        first_bytes,
        metrics='{"accuracy": 0.91}',
        description="baseline",
        intended_use="demo",
    )
    assert first.status_code == 201, first.text
    v1 = first.json()["data"]
    assert v1["version"] == 1
    assert v1["framework"] == "safetensors"
    assert v1["stage"] == "none"
    assert v1["metrics"] == {"accuracy": 0.91}
    assert v1["card"]["description"] == "baseline"
    assert v1["size"] == len(first_bytes)

    second = await register(client, project_id, "churn-mlp", safetensors_bytes([4.0]))
    v2 = second.json()["data"]
    assert v2["version"] == 2

    promoted = await client.put(f"/api/v2/models/{v1['id']}", json={"stage": "production"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["data"]["stage"] == "production"
    swapped = await client.put(f"/api/v2/models/{v2['id']}", json={"stage": "production"})
    assert swapped.json()["data"]["stage"] == "production"
    assert (await client.get(f"/api/v2/models/{v1['id']}")).json()["data"]["stage"] == "archived"

    listed = await client.get(
        "/api/v2/models",
        params={"project_id": project_id, "after": swapped.json()["meta"]["position"]},
    )
    stages = {m["version"]: m["stage"] for m in listed.json()["data"]}
    assert stages == {1: "archived", 2: "production"}

    download = await client.get(f"/api/v2/models/{v1['id']}/download")
    assert download.status_code == 200
    assert download.content == first_bytes
    assert download.headers["content-length"] == str(len(first_bytes))
    assert "churn-mlp-v1.safetensors" in download.headers["content-disposition"]
    history = (await client.get(f"/api/v2/models/{v1['id']}/history")).json()["data"]
    assert [e["type"] for e in history] == [
        "ModelRegistered",
        "ModelRegistered",
        "ModelStageChanged",
        "ModelStageChanged",
        "ModelStageChanged",
    ]


async def test_a_pytorch_state_dict_is_recognised(client: Client) -> None:
    project_id = await new_project(client)
    zipped = b"PK\x03\x04" + b"\x00" * 200
    response = await register(client, project_id, "torchy", zipped)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["framework"] == "pytorch"


async def test_an_artifact_that_is_not_a_model_is_refused_and_not_kept(
    client: Client, settings: Settings
) -> None:
    project_id = await new_project(client)
    blobs = settings.data_dir / "blobs" / "models"
    before = set(blobs.rglob("*")) if blobs.exists() else set()
    response = await register(client, project_id, "junk", b"hello, I am text, not weights")
    assert response.status_code == 422
    assert "safetensors" in response.json()["error"]
    after = set(blobs.rglob("*")) if blobs.exists() else set()
    assert {p for p in after - before if p.is_file()} == set()


async def test_who_may_register_and_bad_names(client: Client, anonymous: Client) -> None:
    project_id = await new_project(client)
    viewer_id, viewer_name, viewer_password = await make_user(client)
    await client.post(
        f"/api/v2/projects/{project_id}/members", json={"user_id": viewer_id, "role": "viewer"}
    )
    viewer = await login(anonymous, viewer_name, viewer_password)
    refused = await anonymous.post(
        "/api/v2/models",
        params={"project_id": project_id},
        data={"project_id": project_id, "name": "m"},
        files={"file": ("w", safetensors_bytes([1.0]), "application/octet-stream")},
        headers=viewer,
    )
    assert refused.status_code == 403
    bad_name = await register(client, project_id, "../escape", safetensors_bytes([1.0]))
    assert bad_name.status_code == 422
    assert "name" in bad_name.json()["error"]
    missing = await client.get(f"/api/v2/models/{uuid.uuid4()}")
    assert missing.status_code == 404
    not_multipart = await client.post("/api/v2/models", json={"project_id": project_id})
    assert not_multipart.status_code == 400
