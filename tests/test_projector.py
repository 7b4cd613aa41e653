"""The projector never skips an event and never applies one twice (DESIGN.md 2 and 3)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiplatform.cache import Cache
from aiplatform.eventstore.codec import EventMetadata, encode
from aiplatform.eventstore.store import EventStore
from aiplatform.projectors.read_models import install
from aiplatform.projectors.runner import catch_up, project_batch
from probe import ProbeProjector, ProbeRecorded

META = EventMetadata(actor="test")
NO_CACHE = Cache(None)


async def new_probe(pool: asyncpg.Pool) -> ProbeProjector:
    projector = ProbeProjector(f"probe{uuid.uuid4().hex[:8]}")
    async with pool.acquire() as connection:
        await install(connection, projector.read_model)
    return projector


async def seen(pool: asyncpg.Pool, projector: ProbeProjector, stream_ids: list[str]) -> list[int]:
    rows = await pool.fetch(
        f"SELECT global_position FROM {projector.table} WHERE stream_id = ANY($1) ORDER BY 1",
        stream_ids,
    )
    return [row["global_position"] for row in rows]


async def append_in_open_transaction(connection: asyncpg.Connection, stream_id: str, n: int) -> int:
    """Appends as the first write of a transaction the caller keeps open; returns its position."""
    row = await connection.fetchrow(
        "SELECT * FROM append_events($1, NULL, NULL, NULL, $2, $3, $4, $5, $6)",
        stream_id,
        [uuid.uuid4()],
        ["ProbeRecorded"],
        [1],
        [encode(ProbeRecorded(probe=stream_id, n=n))],
        [encode(META)],
    )
    return int(row["last_position"])


async def test_an_event_committed_late_is_not_skipped(pool: asyncpg.Pool) -> None:
    """The classic bug: position 1 is handed out, position 2 commits first, a reader that
    moves past 2 never sees 1. Reading only below pg_snapshot_xmin holds 2 back until 1 is in."""
    projector = await new_probe(pool)
    store = EventStore(pool)
    slow_stream, fast_stream = f"probe-{uuid.uuid4()}", f"probe-{uuid.uuid4()}"
    async with pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        slow_position = await append_in_open_transaction(slow, slow_stream, 1)
        fast = await store.append(
            fast_stream, [ProbeRecorded(probe=fast_stream, n=2)], META, expected_version=0
        )
        assert fast.last_position > slow_position
        await catch_up(pool, projector, NO_CACHE)
        assert await seen(pool, projector, [slow_stream, fast_stream]) == []
        await transaction.commit()
    await catch_up(pool, projector, NO_CACHE)
    assert await seen(pool, projector, [slow_stream, fast_stream]) == [
        slow_position,
        fast.last_position,
    ]


async def run_random_writers(pool: asyncpg.Pool, delays_ms: list[int]) -> dict[str, int]:
    """Each writer appends as the first write of a transaction, then holds it open for its
    delay before committing; returns each stream's position."""

    async def writer(delay_ms: int) -> tuple[str, int]:
        stream_id = f"probe-{uuid.uuid4()}"
        async with pool.acquire() as connection, connection.transaction():
            position = await append_in_open_transaction(connection, stream_id, delay_ms)
            await asyncio.sleep(delay_ms / 1000)
        return stream_id, position

    return dict(await asyncio.gather(*(writer(d) for d in delays_ms)))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    delays_ms=st.lists(st.integers(min_value=0, max_value=60), min_size=2, max_size=12),
    batch_sizes=st.lists(st.sampled_from([1, 3, 100]), min_size=1, max_size=5),
)
async def test_a_projector_racing_slow_writers_sees_every_event_exactly_once(
    pool: asyncpg.Pool, delays_ms: list[int], batch_sizes: list[int]
) -> None:
    projector = await new_probe(pool)
    done = asyncio.Event()

    async def project_while_writing() -> None:
        turn = 0
        while not done.is_set():
            batch_size = batch_sizes[turn % len(batch_sizes)]
            await project_batch(pool, projector, NO_CACHE, batch_size=batch_size)
            turn += 1
            await asyncio.sleep(0)

    racing = asyncio.create_task(project_while_writing())
    positions = await run_random_writers(pool, delays_ms)
    done.set()
    await racing
    await catch_up(pool, projector, NO_CACHE)
    assert await seen(pool, projector, list(positions)) == sorted(positions.values())


KILLED_PROJECTOR = """
import asyncio, sys, time
from aiplatform.cache import Cache
from aiplatform.eventstore.store import create_pool
from aiplatform.projectors.runner import project_batch
from probe import ProbeProjector

async def main():
    pool = await create_pool(sys.argv[1], max_size=1)
    async def hang_before_commit(events):
        print("APPLIED", len(events), flush=True)
        time.sleep(600)
    projector = ProbeProjector(sys.argv[2])
    await project_batch(pool, projector, Cache(None), before_commit=hang_before_commit)

asyncio.run(main())
"""


async def test_killing_the_projector_between_apply_and_commit_double_applies_nothing(
    pool: asyncpg.Pool, database_url: str
) -> None:
    projector = await new_probe(pool)
    store = EventStore(pool)
    stream_id = f"probe-{uuid.uuid4()}"
    events = [ProbeRecorded(probe=stream_id, n=n) for n in range(5)]
    await store.append(stream_id, events, META, expected_version=0)

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_PROJECTOR,
        database_url,
        projector.read_model.name,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 30)
    assert line.startswith(b"APPLIED"), line
    child.send_signal(signal.SIGKILL)
    await child.wait()

    await catch_up(pool, projector, NO_CACHE)
    rows = await pool.fetch(
        f"SELECT n FROM {projector.table} WHERE stream_id = $1 ORDER BY n", stream_id
    )
    assert [row["n"] for row in rows] == [0, 1, 2, 3, 4]


async def test_two_projectors_of_one_read_model_never_run_at_once(pool: asyncpg.Pool) -> None:
    projector = await new_probe(pool)
    store = EventStore(pool)
    stream_id = f"probe-{uuid.uuid4()}"
    await store.append(stream_id, [ProbeRecorded(probe=stream_id, n=0)], META, expected_version=0)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold(_: object) -> None:
        inside.set()
        await release.wait()

    first = asyncio.create_task(project_batch(pool, projector, NO_CACHE, before_commit=hold))
    await inside.wait()
    assert await project_batch(pool, projector, NO_CACHE) is None
    release.set()
    assert await first >= 1
    # The first batch may have stopped before the probe: a transaction still open elsewhere on
    # the server holds back what may be read (bounded lag). Later batches get to it.
    for _ in range(100):
        if await seen(pool, projector, [stream_id]):
            break
        await project_batch(pool, projector, NO_CACHE)
        await asyncio.sleep(0.05)
    assert await seen(pool, projector, [stream_id]) != []


async def test_a_wake_up_that_finds_the_read_model_busy_still_projects_its_event(
    pool: asyncpg.Pool,
) -> None:
    """The busy worker's snapshot may predate this commit; the woken one must not just leave."""
    projector = await new_probe(pool)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM projection_checkpoints WHERE projection = $1 FOR UPDATE",
            projector.read_model.checkpoint,
        )
        stream_id = f"probe-{uuid.uuid4()}"
        await EventStore(pool).append(
            stream_id, [ProbeRecorded(probe=stream_id, n=1)], META, expected_version=0
        )
        woken = asyncio.create_task(catch_up(pool, projector, NO_CACHE))
        await asyncio.sleep(0.2)
        assert not woken.done()
    assert await woken >= 1
    assert len(await seen(pool, projector, [stream_id])) == 1
