"""import-v1: every row of a v1 database becomes events through the domain, once, however often
the import runs; rows v2 cannot take are reported with the reason, and the rest goes on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.config import Settings
from aiplatform.importing.v1 import import_v1, imported_id, run_import_v1
from aiplatform.storage import BlobStore, blob_store_from_settings
from v1_database import FILES, write_v1_database

Client = AsyncTestClient[Litestar]
_IMPORTED = (
    "SELECT stream_id, stream_version, event_id, event_type, data::text, metadata::text "
    "FROM events WHERE metadata->>'imported_from' = 'v1' ORDER BY global_position"
)


@pytest.fixture
def blobs(settings: Settings) -> BlobStore:
    return blob_store_from_settings(settings)


async def _state(pool: asyncpg.Pool) -> dict[str, Any]:
    """Everything the import writes: its events and the rows beside the log."""
    return {
        "events": [tuple(r) for r in await pool.fetch(_IMPORTED)],
        "accounts": [
            tuple(r)
            for r in await pool.fetch(
                "SELECT user_id, username, password_hash, system_role, active FROM user_accounts "
                "ORDER BY user_id"
            )
        ],
        "model_index": [
            tuple(r) for r in await pool.fetch("SELECT * FROM model_index ORDER BY model_id")
        ],
    }


async def test_importing_twice_yields_the_state_of_importing_once(
    pool: asyncpg.Pool, blobs: BlobStore, tmp_path: Path
) -> None:
    path = tmp_path / "ai_platform.db"
    refusals = write_v1_database(path, first_id=1000, suffix="_twice")

    first = await import_v1(pool, blobs, path)
    once = await _state(pool)
    second = await import_v1(pool, blobs, path)
    twice = await _state(pool)

    assert twice == once
    assert dict(first.imported) == {
        "users": 3,
        "projects": 2,
        "project_members": 3,
        "experiments": 3,
        "datasets": 2,
        "models": 2,
        "tasks": 3,
    }
    assert second.imported.total() == 0
    assert second.already_imported == first.imported
    assert second.refused == first.refused
    refused_per_table = {t: sum(r.table == t for r in first.refused) for t in refusals}
    assert refused_per_table == refusals
    assert len(once["accounts"]) >= 3


async def test_imported_events_keep_owners_and_times_and_say_where_they_came_from(
    pool: asyncpg.Pool, blobs: BlobStore, tmp_path: Path
) -> None:
    path = tmp_path / "ai_platform.db"
    write_v1_database(path, first_id=2000, suffix="_meta")
    await import_v1(pool, blobs, path)

    project = await pool.fetch(
        "SELECT event_type, data::text, metadata::text FROM events WHERE stream_id = $1 "
        "ORDER BY stream_version",
        f"project-{imported_id('projects', 2000)}",
    )
    created, *granted = project
    data, metadata = json.loads(created["data"]), json.loads(created["metadata"])
    assert created["event_type"] == "ProjectCreated"
    assert data["owner_id"] == metadata["actor"] == imported_id("users", 2000)
    assert metadata["imported_from"] == "v1"
    assert metadata["imported"] is True
    assert metadata["occurred_at"].startswith("2023-04-01T08:00:00")
    assert [g["event_type"] for g in granted] == ["MemberGranted", "MemberGranted"]

    job = await pool.fetch(
        "SELECT event_type, data::text FROM events WHERE stream_id = $1 ORDER BY stream_version",
        f"job-{imported_id('tasks', 2000)}",
    )
    assert [j["event_type"] for j in job] == ["JobSubmitted", "JobSucceeded"]
    assert json.loads(job[1]["data"])["model_id"] == imported_id("models", 2001)
    assert json.loads(job[1]["data"])["duration_s"] == 1800.0


async def test_malformed_rows_are_reported_with_their_reasons_not_fatal(
    pool: asyncpg.Pool, blobs: BlobStore, tmp_path: Path
) -> None:
    path = tmp_path / "ai_platform.db"
    write_v1_database(path, first_id=3000, suffix="_bad")

    report = await import_v1(pool, blobs, path)

    reasons = {(r.table, r.row): r.reason for r in report.refused}
    assert "username" in reasons[("users", "id=3003")]
    assert "email" in reasons[("users", "id=3004")]
    assert "was not imported" in reasons[("projects", "id=3002")]
    assert "not valid JSON" in reasons[("projects", "id=3003")]
    assert "status" in reasons[("experiments", "id=3003")]
    assert "file_hash" in reasons[("datasets", "id=3002")]
    assert "does not match its file_size and file_hash" in reasons[("datasets", "id=3003")]
    assert [(t, row) for t, row, _ in report.missing_files] == [("datasets", "id=3001")]
    assert "framework" in reasons[("models", "id=3002")]
    assert "running" in reasons[("tasks", "id=3003")]
    assert "inference" in reasons[("tasks", "id=3004")]
    assert "template" in reasons[("tasks", "id=3005")]


async def test_the_imported_history_reads_through_the_api(
    client: Client, pool: asyncpg.Pool, blobs: BlobStore, tmp_path: Path
) -> None:
    path = tmp_path / "ai_platform.db"
    write_v1_database(path, first_id=4000, suffix="_api")
    await import_v1(pool, blobs, path)

    model = await client.get(f"/api/v2/models/{imported_id('models', 4001)}")
    experiment = await client.get(f"/api/v2/experiments/{imported_id('experiments', 4000)}")
    user = await client.get(f"/api/v2/users/{imported_id('users', 4002)}")

    assert model.status_code == 200, model.text
    assert (model.json()["data"]["version"], model.json()["data"]["stage"]) == (2, "production")
    assert experiment.json()["data"]["status"] == "completed"
    assert experiment.json()["data"]["metrics"] == {"accuracy": 0.9}
    assert user.json()["data"]["active"] is False
    dataset_file = await client.get(
        f"/api/v2/datasets/{imported_id('datasets', 4000)}/versions/v1/download"
    )
    model_file = await client.get(f"/api/v2/models/{imported_id('models', 4001)}/download")
    assert dataset_file.text == FILES["data/customers.csv"]
    assert model_file.text == FILES["models/2.safetensors"]


async def test_the_command_prints_its_report(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ai_platform.db"
    write_v1_database(path, first_id=5000, suffix="_cli")

    assert await asyncio.to_thread(run_import_v1, settings, path) == 0
    assert await asyncio.to_thread(run_import_v1, settings, tmp_path / "missing.db") == 1

    out = capsys.readouterr().out
    assert "users: 3 imported, 0 already there, 2 refused" in out
    assert "refused tasks id=5004: v2 keeps no history of inference requests" in out
    assert "missing.db is not a file" in out
    assert "no file for datasets id=5001: data/notes.txt was not found" in out
