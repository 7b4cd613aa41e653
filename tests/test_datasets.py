"""Versioned datasets: upload, versions with parents, download, quality reports, bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.api.app import create_app
from aiplatform.api.uploads import receive_upload
from aiplatform.config import Settings
from aiplatform.storage import blob_store_from_settings
from conftest import ADMIN_PASSWORD, login

Client = AsyncTestClient[Litestar]

CSV_V1 = b"id,price,label\n1,10.5,spam\n2,,ham\n3,7,spam\n"
CSV_V2 = b"id,price,label\n1,10.5,spam\n2,3,ham\n3,7,spam\n4,8,ham\n"


async def new_project(client: Client) -> str:
    project_id: str = (await client.post("/api/v2/projects", json={"name": "data"})).json()["data"][
        "id"
    ]
    return project_id


async def upload(
    client: Client, project_id: str, content: bytes, filename: str = "data.csv", **fields: str
) -> Any:
    return await client.post(
        "/api/v2/datasets",
        data={"project_id": project_id, "name": "churn", **fields},
        files={"file": (filename, content, "text/csv")},
    )


def blob_files(settings: Settings) -> set[Path]:
    root = settings.data_dir / "blobs" / "datasets"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def wait_for_quality(client: Client, dataset_id: str, version: str) -> dict[str, Any]:
    # A report takes milliseconds, but the first of a run waits for the worker to set itself up,
    # which on a busy machine has taken over 10 s.
    for _ in range(600):
        body = (await client.get(f"/api/v2/datasets/{dataset_id}/versions/{version}")).json()
        if body["data"]["quality"] is not None:
            report: dict[str, Any] = body["data"]["quality"]
            return report
        await asyncio.sleep(0.05)
    pytest.fail("no quality report within 30 s")


async def test_upload_version_chain_download_and_history(client: Client, admin_id: str) -> None:
    project_id = await new_project(client)
    created = await upload(client, project_id, CSV_V1, filename="prices.txt", message="first cut")
    assert created.status_code == 201, created.text
    dataset = created.json()["data"]
    [v1] = dataset["versions"]
    assert v1["version"] == "v1"
    assert v1["parent"] is None
    assert v1["format"] == "csv"  # from the content, not the name
    assert v1["rows"] == 3
    assert v1["size"] == len(CSV_V1)
    assert v1["sha256"] == hashlib.sha256(CSV_V1).hexdigest()
    assert v1["uploaded_by"] == admin_id
    assert v1["filename"] == "prices.txt"
    url = f"/api/v2/datasets/{dataset['id']}"

    second = await client.post(
        f"{url}/versions",
        data={"message": "filled the gap"},
        files={"file": ("d.csv", CSV_V2, "text/csv")},
    )
    assert second.status_code == 201, second.text
    assert second.json()["data"]["version"] == "v2"
    assert second.json()["data"]["parent"] == "v1"

    identical = await client.post(f"{url}/versions", files={"file": ("d.csv", CSV_V2, "text/csv")})
    assert identical.status_code == 409
    assert "identical to v2" in identical.json()["error"]

    branch = await client.post(
        f"{url}/versions",
        data={"parent_version": "v1"},
        files={"file": ("d.csv", CSV_V1 + b"4,1,ham\n", "text/csv")},
    )
    assert branch.json()["data"]["parent"] == "v1"
    assert branch.json()["data"]["version"] == "v3"

    versions = (await client.get(f"{url}/versions")).json()["data"]
    assert [(v["version"], v["parent"]) for v in versions] == [
        ("v1", None),
        ("v2", "v1"),
        ("v3", "v1"),
    ]
    for version, content in (("v1", CSV_V1), ("v2", CSV_V2)):
        download = await client.get(f"{url}/versions/{version}/download")
        assert download.status_code == 200
        assert download.content == content
        assert download.headers["content-type"].startswith("text/csv")
        assert download.headers["content-length"] == str(len(content))

    history = (await client.get(f"{url}/history")).json()["data"]
    commits = [e for e in history if e["type"] == "DatasetVersionCommitted"]
    assert [(e["data"]["version"], e["data"]["parent"]) for e in commits] == [
        ("v1", None),
        ("v2", "v1"),
        ("v3", "v1"),
    ]
    assert {e["data"]["uploaded_by"] for e in commits} == {admin_id}
    listed = await client.get(
        "/api/v2/datasets",
        params={"project_id": project_id, "after": branch.json()["meta"]["position"]},
    )
    assert listed.json()["data"][0]["latest_version"] == "v3"


async def test_the_quality_report_arrives_after_the_commit(client: Client) -> None:
    project_id = await new_project(client)
    dataset = (await upload(client, project_id, CSV_V1)).json()["data"]
    report = await wait_for_quality(client, dataset["id"], "v1")
    assert report["rows"] == 3
    assert report["columns"] == 3
    price = next(c for c in report["column_reports"] if c["name"] == "price")
    assert price["missing"] == 1
    assert report["label_distribution"] == {"spam": 2, "ham": 1}
    assert any("price" in problem for problem in report["problems"])


@pytest.mark.parametrize(
    ("content", "fmt", "rows"),
    [
        (b"id,label\r\n1,spam\r\n\r\n2,ham\r\n\r\n\r\n3,spam", "csv", 3),
        (b'{"text": "hi"}\n\n{"text": "bye"}\n' * 3, "jsonl", 6),
        (b"first line\n\n  \nsecond\r\n\r\nlast\n", "text", 4),
    ],
)
async def test_the_committed_row_count_matches_the_quality_report(
    client: Client, content: bytes, fmt: str, rows: int
) -> None:
    project_id = await new_project(client)
    created = await upload(client, project_id, content)
    assert created.status_code == 201, created.text
    dataset = created.json()["data"]
    assert (dataset["versions"][0]["format"], dataset["versions"][0]["rows"]) == (fmt, rows)
    history = (await client.get(f"/api/v2/datasets/{dataset['id']}/history")).json()["data"]
    [committed] = [e for e in history if e["type"] == "DatasetVersionCommitted"]
    assert committed["data"]["rows"] == rows
    assert (await wait_for_quality(client, dataset["id"], "v1"))["rows"] == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "binary")],
)
async def test_empty_and_binary_files_are_refused_and_not_kept(
    client: Client, settings: Settings, content: bytes, message: str
) -> None:
    project_id = await new_project(client)
    before = blob_files(settings)
    response = await upload(client, project_id, content)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]
    assert blob_files(settings) == before


_NAMED = b'--XyZ\r\nContent-Disposition: form-data; name="name"\r\n\r\nchurn\r\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # The Content-Length is honoured, but the body stops before its closing boundary: the
        # file was stored as if complete.
        (
            _NAMED + b'--XyZ\r\nContent-Disposition: form-data; name="file"\r\n\r\na,b\n1,2\n',
            "ends before",
        ),
        # This answered 500, the parser's exception unhandled.
        (_NAMED + b"--XyZ\r\nno header here\r\n\r\na,b\n--XyZ--\r\n", "malformed header line"),
    ],
)
async def test_a_malformed_multipart_body_is_refused_and_not_kept(
    client: Client, settings: Settings, body: bytes, message: str
) -> None:
    project_id = await new_project(client)
    before = blob_files(settings)
    response = await client.post(
        "/api/v2/datasets",
        params={"project_id": project_id},
        content=body,
        headers={"content-type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert blob_files(settings) == before


async def test_a_broken_csv_is_stored_and_its_report_says_what_is_wrong(client: Client) -> None:
    project_id = await new_project(client)
    good = b"".join(b"%d,%d,%d\n" % (n, n + 1, n + 2) for n in range(20))
    broken = b"a,b,c\n" + good + b"4,5\n6,7,8,9\n\xff\xfe,1,2\n"
    created = await upload(client, project_id, broken)
    assert created.status_code == 201, created.text
    report = await wait_for_quality(client, created.json()["data"]["id"], "v1")
    problems = " ".join(report["problems"])
    assert "number of fields" in problems
    assert "UTF-8" in problems


@pytest.mark.parametrize("filename", ["../../etc/passwd", "evil\x00name.csv", "x" * 300 + ".csv"])
async def test_hostile_file_names_are_never_paths(
    client: Client, settings: Settings, filename: str
) -> None:
    project_id = await new_project(client)
    response = await upload(client, project_id, CSV_V1, filename=filename)
    assert response.status_code == 201, response.text
    shown = response.json()["data"]["versions"][0]["filename"]
    assert "/" not in shown
    assert "\x00" not in shown
    assert len(shown) <= 255
    assert not any("passwd" in p.name or "evil" in p.name for p in blob_files(settings))


async def test_a_parent_version_that_does_not_exist_is_refused(
    client: Client, settings: Settings
) -> None:
    project_id = await new_project(client)
    dataset = (await upload(client, project_id, CSV_V1)).json()["data"]
    before = blob_files(settings)
    response = await client.post(
        f"/api/v2/datasets/{dataset['id']}/versions",
        data={"parent_version": "v9"},
        files={"file": ("d.csv", CSV_V2, "text/csv")},
    )
    assert response.status_code == 422
    assert "v9" in response.json()["error"]
    assert blob_files(settings) == before


async def test_an_upload_over_the_limit_is_413_and_leaves_nothing(
    settings: Settings, projector_worker: None
) -> None:
    small = dataclasses.replace(settings, max_upload_bytes=1_000)
    async with AsyncTestClient(app=create_app(small)) as limited:
        limited.headers.update(await login(limited, "root", ADMIN_PASSWORD))
        project_id = await new_project(limited)
        before = blob_files(settings)
        response = await upload(limited, project_id, b"a,b\n" + b"1,2\n" * 1_000)
        assert response.status_code == 413
        assert response.json()["meta"]["code"] == "too_large"
        assert blob_files(settings) == before


class _CutOffRequest:
    """A request whose client disconnects halfway through the file."""

    headers = {"content-type": "multipart/form-data; boundary=XyZ"}

    async def stream(self) -> AsyncIterator[bytes]:
        yield b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        yield b"a,b\n1,2\n" * 1000
        raise ConnectionResetError("client went away")


async def test_an_upload_cut_off_midway_leaves_no_blob(settings: Settings) -> None:
    store = blob_store_from_settings(settings)
    key = f"datasets/{uuid.uuid4()}/{uuid.uuid4().hex}"
    with pytest.raises(ConnectionResetError):
        await receive_upload(_CutOffRequest(), store, key, max_bytes=10**9)  # type: ignore[arg-type]
    assert not await store.exists(key)
    assert not list((settings.data_dir / "blobs").rglob("*.tmp*"))


class _WholeRequest:
    """A request that sends one file in 256 KiB chunks, as uvicorn hands them over."""

    headers = {"content-type": "multipart/form-data; boundary=XyZ"}

    def __init__(self, content: bytes) -> None:
        self._body = (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
            + content
            + b"\r\n--XyZ--\r\n"
        )

    async def stream(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), 256 << 10):
            yield self._body[start : start + (256 << 10)]


async def test_the_row_counter_sees_the_whole_file_off_the_event_loop(settings: Settings) -> None:
    # Counting on the event loop slowed every upload to a third of the disk's speed.
    store = blob_store_from_settings(settings)
    key = f"datasets/{uuid.uuid4()}/{uuid.uuid4().hex}"
    content = b"id,label\n" + b"1,spam\n2,ham\n\n" * 1_000_000
    seen: list[bytes] = []
    threads: set[int] = set()

    def observe(batch: memoryview) -> None:
        seen.append(bytes(batch))  # the view's buffer is reused for a later batch
        threads.add(threading.get_ident())

    request = _WholeRequest(content)
    upload = await receive_upload(request, store, key, max_bytes=10**9, observe=observe)  # type: ignore[arg-type]
    await store.delete(key)

    assert upload.blob.size == len(content)
    assert b"".join(seen) == content
    assert threads
    assert threading.get_ident() not in threads


async def test_request_middlewares_hand_the_body_through_untouched(settings: Settings) -> None:
    # An upload's body streams through every request middleware the app installs: one that
    # wrapped `receive`, or read the body ahead, would cost every byte of every upload.
    app = create_app(settings)
    handed: list[Any] = []
    sent: list[dict[str, Any]] = []

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        handed.append(receive)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        raise AssertionError("a middleware read the body")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    stack: Any = handler
    for middleware in reversed(app.middleware):
        stack = middleware(stack)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v2/datasets",
        "headers": [(b"content-type", b"multipart/form-data; boundary=x")],
        "state": {},
    }
    await stack(scope, receive, send)

    assert len(app.middleware) >= 3
    assert len(handed) == 1
    assert handed[0] is receive
    assert sent[0]["status"] == 201


async def test_a_deleted_dataset_is_gone_but_its_history_stays(client: Client) -> None:
    project_id = await new_project(client)
    dataset = (await upload(client, project_id, CSV_V1)).json()["data"]
    url = f"/api/v2/datasets/{dataset['id']}"
    deleted = await client.delete(url)
    assert deleted.status_code == 200, deleted.text
    assert (await client.get(url)).status_code == 404
    assert (await client.get(f"{url}/versions/v1/download")).status_code == 404
    history = (await client.get(f"{url}/history")).json()["data"]
    assert history[-1]["type"] == "DatasetDeleted"
    listed = await client.get(
        "/api/v2/datasets",
        params={"project_id": project_id, "after": deleted.json()["meta"]["position"]},
    )
    assert dataset["id"] not in [d["id"] for d in listed.json()["data"]]
