"""The event catalog in `events/` agrees with the code, and every version in it still decodes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest

from aiplatform.domain.jobs import JobStarted
from aiplatform.eventstore import catalog
from aiplatform.eventstore.codec import UPCASTERS, decode_event
from aiplatform.eventstore.store import EventStore

CATALOG = Path(__file__).resolve().parents[1] / "events"


def test_the_catalog_matches_the_code() -> None:
    assert catalog.check(CATALOG) == []


def test_every_event_class_has_its_current_version_in_the_catalog() -> None:
    listed = {(entry.event_type, entry.schema_version) for entry in catalog.entries(CATALOG)}
    for name, cls in catalog.event_classes().items():
        assert (name, cls.schema_version) in listed


@pytest.mark.parametrize("entry", catalog.entries(CATALOG), ids=lambda entry: entry.path.name)
def test_every_cataloged_version_decodes_through_the_upcasters(
    entry: catalog.CatalogEntry,
) -> None:
    document = json.loads(entry.path.read_text())
    assert document["x-event-type"] == entry.event_type
    assert document["x-schema-version"] == entry.schema_version
    assert document["examples"], f"{entry.path.name} keeps no sample of its version"
    for example in document["examples"]:
        event = decode_event(entry.event_type, entry.schema_version, json.dumps(example))
        assert type(event).__name__ == entry.event_type


def test_a_changed_event_without_a_new_version_is_reported(tmp_path: Path) -> None:
    catalog.generate(tmp_path)
    path = tmp_path / "ProjectCreated.v1.json"
    document = json.loads(path.read_text())
    document["$defs"]["ProjectCreated"]["required"].remove("tags")
    path.write_text(json.dumps(document))
    problems = catalog.check(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("ProjectCreated.v1.json differs")


def test_a_missing_or_unknown_file_is_reported(tmp_path: Path) -> None:
    catalog.generate(tmp_path)
    (tmp_path / "UserRegistered.v1.json").unlink()
    (tmp_path / "ProjectRenamed.v1.json").write_text("{}")
    problems = catalog.check(tmp_path)
    assert any(p.startswith("UserRegistered.v1.json is missing") for p in problems)
    assert any(p.startswith("ProjectRenamed.v1.json: no event class") for p in problems)


def test_samples_are_the_same_on_every_run() -> None:
    for cls in catalog.event_classes().values():
        assert msgspec.json.encode(catalog.sample(cls)) == msgspec.json.encode(catalog.sample(cls))


def test_every_upcaster_belongs_to_a_cataloged_version() -> None:
    listed = {(entry.event_type, entry.schema_version) for entry in catalog.entries(CATALOG)}
    # Other tests register upcasters of events of their own.
    platform = catalog.event_classes()
    assert {key for key in UPCASTERS if key[0] in platform} <= listed


def test_a_v1_job_start_gains_its_accelerator_from_its_devices() -> None:
    stored = {"type": "JobStarted", "job_id": "j", "attempt": 1, "worker": "w"}
    on_gpu = decode_event("JobStarted", 1, json.dumps({**stored, "devices": ["cuda:0", "cuda:1"]}))
    on_cpu = decode_event("JobStarted", 1, json.dumps({**stored, "devices": ["cpu"]}))
    assert isinstance(on_gpu, JobStarted)
    assert isinstance(on_cpu, JobStarted)
    assert (on_gpu.accelerator, on_cpu.accelerator) == ("cuda", "cpu")


async def test_a_stored_v1_event_is_read_back_as_the_current_version(pool: asyncpg.Pool) -> None:
    """A row written by the code before the change, read through the event store."""
    job_id = str(uuid.uuid4())
    v1 = {"job_id": job_id, "attempt": 1, "worker": "w1", "devices": ["cuda:0"]}
    await pool.execute(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, "
        "data, metadata) VALUES ($1, 1, $2, 'JobStarted', 1, $3::jsonb, $4::jsonb)",
        f"job-{job_id}",
        uuid.uuid4(),
        json.dumps(v1),
        json.dumps({"actor": "system:test"}),
    )
    (recorded,) = await EventStore(pool).read_stream(f"job-{job_id}")
    assert recorded.schema_version == 1
    assert recorded.event == JobStarted(
        job_id=job_id, attempt=1, worker="w1", devices=["cuda:0"], accelerator="cuda"
    )
