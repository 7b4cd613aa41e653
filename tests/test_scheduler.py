"""The scheduler's tick catches the projector up even when no wake-up was sent after a commit."""

from __future__ import annotations

import asyncio
import threading
import uuid

import asyncpg

from aiplatform.config import Settings
from aiplatform.domain.projects import ProjectCreated
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.store import EventStore
from aiplatform.projectors.progress import wait_until_projected
from aiplatform.projectors.read_models import load_read_model
from aiplatform.scheduler import run_scheduler
from aiplatform.workers.broker import build_broker


async def test_a_commit_without_a_wake_up_is_projected_on_the_next_tick(
    pool: asyncpg.Pool, settings: Settings, projector_worker: None
) -> None:
    project_id = str(uuid.uuid4())
    created = ProjectCreated(
        project_id=project_id, name="ticked", description="", config={}, tags=[], owner_id="t"
    )
    # Appended straight to the store: no command handler, so no wake-up message.
    result = await EventStore(pool).append(
        f"project-{project_id}", [created], EventMetadata(actor="t"), expected_version=0
    )
    broker = build_broker(settings)
    stop = threading.Event()
    ticking = threading.Thread(target=run_scheduler, args=(broker, stop), daemon=True)
    ticking.start()
    try:
        read_model = load_read_model("projects")
        assert await wait_until_projected(pool, read_model, result.last_position, timeout_s=5)
        name = await pool.fetchval(
            f"SELECT name FROM {read_model.table('projects')} WHERE id = $1", uuid.UUID(project_id)
        )
        assert name == "ticked"
    finally:
        stop.set()
        await asyncio.to_thread(ticking.join, 5)
        broker.close()
