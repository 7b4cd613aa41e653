"""Inference end to end: models trained by a real training worker, served by a real inference
worker (`aiplatform worker --queues inference`), over HTTP — whole answers and streams."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from aiplatform.aggregates import MODELS
from aiplatform.api.app import create_app
from aiplatform.commands import CommandHandler
from aiplatform.config import Settings
from aiplatform.eventstore.store import EventStore
from aiplatform.inference.engine import ModelCache, model_bytes
from aiplatform.storage import blob_store_from_settings
from conftest import ADMIN_PASSWORD, login, make_user
from training_support import (
    Client,
    finished,
    new_project,
    of_type,
    start_training_worker,
    stop_worker,
    submitted_job,
    tabular_csv,
    text_corpus,
    upload_dataset,
    wait_for_job,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(settings: Settings, projector_worker: None) -> Iterator[None]:
    training = start_training_worker()
    inference = subprocess.Popen(
        [sys.executable, "-m", "aiplatform", "worker", "--queues", "inference", "--threads", "2"],
        env=dict(os.environ),
        start_new_session=True,
    )
    yield
    stop_worker(training)
    stop_worker(inference)


@pytest.fixture(scope="module")
async def trained(client: Client, pool: asyncpg.Pool, workers: None) -> dict[str, str]:
    """A char-lm and a tabular classifier, trained for the module; their model ids."""
    project_id = await new_project(client, "inference")
    corpus = await upload_dataset(client, project_id, text_corpus(), "corpus.txt")
    table = await upload_dataset(client, project_id, tabular_csv(600), "points.csv", name="pts")
    models = {"project_id": project_id}
    for template, dataset_id in (("char-lm", corpus), ("tabular-classifier", table)):
        job_id = await submitted_job(
            client, project_id=project_id, template=template, dataset_id=dataset_id
        )
        job, events = await wait_for_job(pool, job_id, finished)
        assert job.status == "succeeded", job.error
        models[template] = of_type(events, "JobSucceeded")[0].model_id
    return models


async def generate(client: Client, **body: Any) -> Any:
    return await client.post("/api/v2/inference/generate", json=body)


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_a_trained_char_lm_generates_reproducibly_whole_or_streamed(
    client: Client, trained: dict[str, str]
) -> None:
    body = {"model_id": trained["char-lm"], "prompt": "the cat", "max_new_tokens": 60}
    first = await generate(client, **body, seed=7)
    assert first.status_code == 200, first.text
    text = first.json()["data"]["text"]
    assert len(text) >= 20  # 60 bytes of mostly ASCII
    again = await generate(client, **body, seed=7)
    assert again.json()["data"]["text"] == text
    other = await generate(client, **body, seed=8)
    assert other.json()["data"]["text"] != text

    streamed = await generate(client, **body, seed=7, stream=True)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed.text)
    pieces = [data["text"] for name, data in events if name == "piece"]
    assert len(pieces) > 10  # it came in pieces
    assert "".join(pieces) == text
    assert events[-1] == ("done", {"text": text})

    greedy = await generate(client, **body, temperature=0)
    assert (
        greedy.json()["data"]["text"]
        == (await generate(client, **body, temperature=0)).json()["data"]["text"]
    )


async def test_a_classifier_predicts_labels_with_probabilities(
    client: Client, trained: dict[str, str]
) -> None:
    response = await generate(
        client,
        model_id=trained["tabular-classifier"],
        inputs=[{"x": 0.0, "y": 0.9, "noise": 0.5}, {"x": 0.0, "y": -0.9, "noise": 0.5}],
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["data"]["predictions"]
    assert [p["label"] for p in predictions] == ["above", "below"]
    for prediction in predictions:
        assert set(prediction["probabilities"]) == {"above", "below"}
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-4

    missing = await generate(client, model_id=trained["tabular-classifier"], inputs=[{"x": 1}])
    assert missing.status_code == 422
    assert "y" in missing.json()["error"]


async def test_servable_models_are_listed(client: Client, trained: dict[str, str]) -> None:
    response = await client.get(
        "/api/v2/inference/models", params={"project_id": trained["project_id"]}
    )
    assert response.status_code == 200, response.text
    by_template = {m["template"]: m for m in response.json()["data"]}
    assert by_template["char-lm"]["id"] == trained["char-lm"]
    assert by_template["char-lm"]["task"] == "text-generation"
    assert by_template["tabular-classifier"]["task"] == "classification"


async def test_requests_that_cannot_be_served_say_why(
    client: Client, pool: asyncpg.Pool, trained: dict[str, str]
) -> None:
    unknown = await generate(client, model_id=str(uuid.uuid4()), prompt="hi")
    assert unknown.status_code == 404

    too_long = await generate(client, model_id=trained["char-lm"], prompt="x" * 4_097)
    assert too_long.status_code == 422
    assert "prompt" in too_long.text

    no_prompt = await generate(client, model_id=trained["char-lm"], inputs=["a"])
    assert no_prompt.status_code == 400
    assert "prompt" in no_prompt.json()["error"]

    streamed_classifier = await generate(
        client, model_id=trained["tabular-classifier"], inputs=[{"x": 1}], stream=True
    )
    assert streamed_classifier.status_code == 400

    # A job that is still waiting to train: its model does not exist yet.
    dataset = await client.get("/api/v2/datasets", params={"project_id": trained["project_id"]})
    corpus_id = next(d["id"] for d in dataset.json()["data"] if d["name"] == "corpus")
    job_id = await submitted_job(
        client,
        project_id=trained["project_id"],
        template="char-lm",
        dataset_id=corpus_id,
        priority=9,
        hyperparameters={"epochs": 1},
    )
    pending = await generate(client, model_id=job_id, prompt="hi")
    assert pending.status_code == 409
    assert "still" in pending.json()["error"]
    await client.post(f"/api/v2/training/jobs/{job_id}/cancel")


async def test_a_viewer_without_inference_rights_is_refused(
    client: Client, trained: dict[str, str]
) -> None:
    user_id, username, password = await make_user(client)
    outsider = await login(client, username, password)
    hidden = await client.post(
        "/api/v2/inference/generate",
        json={"model_id": trained["char-lm"], "prompt": "hi"},
        headers=outsider,
    )
    assert hidden.status_code == 404  # not a member: the project's models do not exist for them
    granted = await client.post(
        f"/api/v2/projects/{trained['project_id']}/members",
        json={"user_id": user_id, "role": "viewer"},
    )
    assert granted.status_code in (200, 201), granted.text
    # Inference reads the project's view, as GET project does: wait until it has the member.
    for _ in range(100):
        seen = await client.get(f"/api/v2/projects/{trained['project_id']}", headers=outsider)
        if seen.status_code == 200:
            break
        await asyncio.sleep(0.1)
    viewer = await client.post(
        "/api/v2/inference/generate",
        json={"model_id": trained["char-lm"], "prompt": "hi"},
        headers=outsider,
    )
    assert viewer.status_code == 403


async def test_no_worker_answering_is_a_503_not_a_hang(
    settings: Settings, trained: dict[str, str]
) -> None:
    # The same platform under another instance name: its inference queue has no worker.
    lonely = dataclasses.replace(settings, instance=f"{settings.instance}-lonely")
    lonely = dataclasses.replace(lonely, inference_timeout_s=1.0)
    async with AsyncTestClient(app=create_app(lonely)) as client:
        client.headers.update(await login(client, "root", ADMIN_PASSWORD))
        response = await generate(client, model_id=trained["char-lm"], prompt="hi")
    assert response.status_code == 503
    assert "no inference worker answered within 1 s" in response.json()["error"]


async def test_the_model_cache_evicts_the_least_recently_used_past_its_budget(
    settings: Settings, pool: asyncpg.Pool, trained: dict[str, str]
) -> None:
    handler = CommandHandler(EventStore(pool))
    versions = {}
    for template in ("char-lm", "tabular-classifier"):
        line_row = await pool.fetchrow(
            "SELECT project_id, name FROM model_index WHERE model_id = $1",
            uuid.UUID(trained[template]),
        )
        line = await handler.current_state(MODELS, f"{line_row['project_id']}/{line_row['name']}")
        assert line is not None
        versions[template] = line.versions[trained[template]]

    def load_args(template: str) -> tuple[str, str, str]:
        version = versions[template]
        return trained[template], version.artifact_key, version.sha256

    blobs = blob_store_from_settings(settings)
    probe = ModelCache(blobs, budget_bytes=1 << 40)
    sizes = {t: model_bytes(await probe.get(*load_args(t))) for t in versions}
    cache = ModelCache(blobs, budget_bytes=max(sizes.values()))
    lm = await cache.get(*load_args("char-lm"))
    assert await cache.get(*load_args("char-lm")) is lm  # kept loaded
    await cache.get(*load_args("tabular-classifier"))
    assert cache.loaded == [trained["tabular-classifier"]]  # the least recently used went
    assert cache.used_bytes <= cache.budget_bytes
    assert await cache.get(*load_args("char-lm")) is not lm  # loaded again


async def test_an_uploaded_model_is_refused_every_time_not_only_the_first(
    client: Client, trained: dict[str, str]
) -> None:
    """Regression: the remembered model versions skipped the check on the second request."""
    model_file = (await client.get(f"/api/v2/models/{trained['char-lm']}/download")).content
    uploaded = await client.post(
        "/api/v2/models",
        data={"project_id": trained["project_id"], "name": "uploaded"},
        files={"file": ("m.safetensors", model_file, "application/octet-stream")},
    )
    assert uploaded.status_code == 201, uploaded.text
    for _ in range(2):
        refused = await generate(client, model_id=uploaded.json()["data"]["id"], prompt="hi")
        assert refused.status_code == 422
        assert "uploaded, not trained here" in refused.json()["error"]
