"""The API end to end with its blob store in S3 (moto's server: a real S3-compatible HTTP server on
a local port). Datasets and model artifacts go into the bucket and come back through HTTP, a
worker process reads them from there for the quality reports, and the local data directory
stays empty."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import Message
from moto.server import ThreadedMotoServer

from aiplatform import processes
from aiplatform.api.app import create_app
from aiplatform.config import Settings, load_settings
from aiplatform.storage import S3_PART_BYTES, s3_client
from conftest import ADMIN_PASSWORD, login

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Client = AsyncTestClient[Litestar]

BUCKET = "aiplatform-api-test"
# The worker process imports the platform (the ML stack too) before it takes a message.
QUALITY_TIMEOUT_S = 120.0

CSV_V1 = b"id,price,label\n1,10.5,spam\n2,,ham\n3,7,spam\n"


def csv_over_one_part() -> tuple[bytes, int]:
    """A CSV larger than one S3 part, so that it goes up as a multipart upload; and its rows."""
    rows = S3_PART_BYTES // 15
    body = "".join(f"{n},{n % 997}.5,{'spam' if n % 3 else 'ham'}\n" for n in range(rows))
    data = b"id,price,label\n" + body.encode()
    assert len(data) > S3_PART_BYTES
    return data, rows


def safetensors_bytes(values: list[float]) -> bytes:
    data = struct.pack(f"<{len(values)}f", *values)
    header = json.dumps(
        {"weight": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + data


@dataclass(frozen=True)
class S3Platform:
    client: Client
    s3: S3Client
    prefix: str  # the blob store's prefix in BUCKET
    data_dir: Path
    worker_log: Path

    def objects(self) -> dict[str, bytes]:
        """What the store holds: object keys (without the prefix) and their bytes."""
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{self.prefix}/")
        return {
            item["Key"].removeprefix(f"{self.prefix}/"): self.s3.get_object(
                Bucket=BUCKET, Key=item["Key"]
            )["Body"].read()
            for item in listed.get("Contents", [])
        }

    def open_uploads(self) -> list[str]:
        uploads = self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return [u["Key"] for u in uploads if u["Key"].startswith(f"{self.prefix}/")]

    def local_files(self) -> list[Path]:
        return [p for p in self.data_dir.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AIPLATFORM_S3_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3_client(env).create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


def delete_redis_keys(redis_url: str, instance: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{instance}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
async def s3_platform(
    settings: Settings,
    database_name: str,
    admin_id: str,
    s3_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[S3Platform]:
    """An API whose blob store is `s3://BUCKET/<prefix>`, with a worker process on the same store
    and a scheduler. Their queues are their own: the in-process worker of the other tests
    consumes the run's queues and would look for the blobs in its own store."""
    work = tmp_path_factory.mktemp("s3-platform")
    prefix = f"run-{uuid.uuid4().hex[:12]}"
    instance = f"{database_name}-s3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIPLATFORM_", "AWS_"))}
    env.update(
        {
            **s3_env,
            "AIPLATFORM_DATABASE_URL": settings.require_database_url(),
            "AIPLATFORM_REDIS_URL": settings.require_redis_url(),
            "AIPLATFORM_INSTANCE": instance,
            "AIPLATFORM_SECRET_KEY": settings.require_secret_key(),
            "AIPLATFORM_DATA_DIR": str(work / "platform-data"),
            "AIPLATFORM_STORAGE": f"s3://{BUCKET}/{prefix}",
        }
    )
    s3_settings = load_settings(env)
    try:
        with (
            pytest.MonkeyPatch.context() as patch,
            processes.running(
                "worker", ["worker", "--queues", "projector,data"], env, work / "worker.log"
            ),
            # Its tick wakes the projector every second, as under `aiplatform up`: a wake-up
            # sent while an older transaction is still open somewhere leaves the newest events
            # for the next one.
            processes.running("scheduler", ["scheduler"], env, work / "scheduler.log"),
        ):
            # The API builds its S3 client from the process's environment.
            for name, value in s3_env.items():
                patch.setenv(name, value)
            async with AsyncTestClient(app=create_app(s3_settings)) as client:
                client.headers.update(await login(client, "root", ADMIN_PASSWORD))
                yield S3Platform(
                    client, s3_client(s3_env), prefix, s3_settings.data_dir, work / "worker.log"
                )
    finally:
        delete_redis_keys(settings.require_redis_url(), instance)


async def wait_for_quality(platform: S3Platform, dataset_id: str, version: str) -> dict[str, Any]:
    url = f"/api/v2/datasets/{dataset_id}/versions/{version}"
    deadline = asyncio.get_running_loop().time() + QUALITY_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline:
        body = (await platform.client.get(url)).json()
        quality: dict[str, Any] | None = body["data"]["quality"]
        if quality is not None:
            return quality
        await asyncio.sleep(0.1)
    log = platform.worker_log.read_text(errors="replace")[-4000:]
    pytest.fail(f"no quality report within {QUALITY_TIMEOUT_S:g} s; the worker's log:\n{log}")


async def test_datasets_and_models_live_in_the_bucket(s3_platform: S3Platform) -> None:
    client = s3_platform.client
    created_project = await client.post("/api/v2/projects", json={"name": "s3"})
    project_id = created_project.json()["data"]["id"]
    large_csv, large_rows = csv_over_one_part()

    first = await client.post(
        "/api/v2/datasets",
        data={"project_id": project_id, "name": "prices"},
        files={"file": ("prices.csv", CSV_V1, "text/csv")},
    )
    assert first.status_code == 201, first.text
    dataset = first.json()["data"]
    url = f"/api/v2/datasets/{dataset['id']}"
    second = await client.post(
        f"{url}/versions",
        data={"parent_version": "v1", "message": "more rows"},
        files={"file": ("prices.csv", large_csv, "text/csv")},
    )
    assert second.status_code == 201, second.text
    v2 = second.json()["data"]
    assert (v2["version"], v2["parent"], v2["rows"]) == ("v2", "v1", large_rows)
    assert v2["sha256"] == hashlib.sha256(large_csv).hexdigest()

    listed = await client.get(
        "/api/v2/datasets",
        params={"project_id": project_id, "after": second.json()["meta"]["position"]},
    )
    assert [(d["id"], d["latest_version"]) for d in listed.json()["data"]] == [
        (dataset["id"], "v2")
    ]
    versions = (await client.get(f"{url}/versions")).json()["data"]
    assert [(v["version"], v["parent"]) for v in versions] == [("v1", None), ("v2", "v1")]
    for version, content in (("v1", CSV_V1), ("v2", large_csv)):
        download = await client.get(f"{url}/versions/{version}/download")
        assert download.status_code == 200
        assert download.content == content
        assert download.headers["content-type"].startswith("text/csv")
        assert download.headers["content-length"] == str(len(content))

    # The worker process downloaded both versions from the bucket to analyse them.
    assert (await wait_for_quality(s3_platform, dataset["id"], "v1"))["rows"] == 3
    assert (await wait_for_quality(s3_platform, dataset["id"], "v2"))["rows"] == large_rows

    artifact = safetensors_bytes([0.5, 1.5, 2.5])
    registered = await client.post(
        "/api/v2/models",
        data={"project_id": project_id, "name": "churn-mlp"},
        files={"file": ("weights.safetensors", artifact, "application/octet-stream")},
    )
    assert registered.status_code == 201, registered.text
    model = registered.json()["data"]
    download = await client.get(f"/api/v2/models/{model['id']}/download")
    assert download.status_code == 200
    assert download.content == artifact
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-length"] == str(len(artifact))

    stored = s3_platform.objects()
    assert sorted(stored.values()) == sorted([artifact, CSV_V1, large_csv])
    assert stored[f"models/{model['id']}/artifact"] == artifact
    assert {key.rsplit("/", 1)[0] for key in stored if key.startswith("datasets/")} == {
        f"datasets/{dataset['id']}"
    }
    assert s3_platform.open_uploads() == []
    assert s3_platform.local_files() == []


async def test_an_upload_cut_off_midway_leaves_nothing_in_the_bucket(
    s3_platform: S3Platform,
) -> None:
    client = s3_platform.client
    project_id = (await client.post("/api/v2/projects", json={"name": "cut"})).json()["data"]["id"]
    before = s3_platform.objects()
    head = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\nid,label\n'
    )
    # Past one part: the multipart upload has begun when the client goes away.
    body = b"1,spam\n" * (2 * S3_PART_BYTES // 7)
    received = [
        {"type": "http.request", "body": head, "more_body": True},
        *(
            {"type": "http.request", "body": body[start : start + (1 << 20)], "more_body": True}
            for start in range(0, len(body), 1 << 20)
        ),
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> dict[str, Any]:
        return received.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v2/datasets",
        "raw_path": b"/api/v2/datasets",
        "root_path": "",
        "query_string": f"project_id={project_id}".encode(),
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", client.headers["authorization"].encode()),
            (b"content-type", b"multipart/form-data; boundary=XyZ"),
            (b"content-length", str(len(head) + len(body) + 100).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    # The app runs on the test client's event loop, as for any request of the client.
    await asyncio.to_thread(
        client.blocking_portal.call,
        client.app,
        scope,  # type: ignore[arg-type]
        receive,  # type: ignore[arg-type]
        send,
    )

    assert not received, "the app stopped reading before the client went away"
    assert s3_platform.objects() == before
    assert s3_platform.open_uploads() == []
    datasets = await client.get("/api/v2/datasets", params={"project_id": project_id})
    assert datasets.json()["data"] == []
