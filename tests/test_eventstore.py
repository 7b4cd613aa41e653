"""The event store's guarantees against the real PostgreSQL (DESIGN.md 1, 4 and 5)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.eventstore.codec import Event, EventMetadata, decode_event, upcaster
from aiplatform.eventstore.errors import ConcurrencyError, IdempotencyKeyReusedError
from aiplatform.eventstore.store import _APPEND_MANY_SQL, _APPEND_ONE_SQL, EventStore

META = EventMetadata(actor="test", client_ip="127.0.0.1", user_agent="pytest", request_id="r1")


class CounterIncremented(Event, frozen=True):
    counter_id: str
    by: int


def stream() -> str:
    return f"counter-{uuid.uuid4()}"


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool)


async def test_appended_events_read_back_in_order_with_metadata(store: EventStore) -> None:
    sid = stream()
    events = [CounterIncremented(counter_id=sid, by=n) for n in range(3)]
    result = await store.append(sid, events, META, expected_version=0)
    assert result.stream_version == 3
    assert result.last_position - result.first_position == 2
    recorded = await store.read_stream(sid)
    assert [r.event for r in recorded] == events
    assert [r.stream_version for r in recorded] == [1, 2, 3]
    assert recorded[0].metadata == META


async def test_a_stale_expected_version_is_a_conflict_carrying_the_current_version(
    store: EventStore,
) -> None:
    sid = stream()
    await store.append(sid, [CounterIncremented(counter_id=sid, by=1)], META, expected_version=0)
    with pytest.raises(ConcurrencyError) as raised:
        await store.append(
            sid, [CounterIncremented(counter_id=sid, by=2)], META, expected_version=0
        )
    assert raised.value.current_version == 1
    assert len(await store.read_stream(sid)) == 1


async def test_concurrent_writers_on_one_version_never_both_win(store: EventStore) -> None:
    sid = stream()

    async def write(n: int) -> bool:
        try:
            await store.append(
                sid, [CounterIncremented(counter_id=sid, by=n)], META, expected_version=0
            )
        except ConcurrencyError:
            return False
        return True

    outcomes = await asyncio.gather(*(write(n) for n in range(20)))
    assert outcomes.count(True) == 1
    assert len(await store.read_stream(sid)) == 1


async def test_the_primary_key_stops_racing_writers_that_pass_no_expected_version(
    store: EventStore,
) -> None:
    sid = stream()

    async def write(n: int) -> int:
        for _ in range(50):
            try:
                await store.append(
                    sid, [CounterIncremented(counter_id=sid, by=n)], META, expected_version=None
                )
                return 1
            except ConcurrencyError:
                continue
        return 0

    written = sum(await asyncio.gather(*(write(n) for n in range(10))))
    versions = [r.stream_version for r in await store.read_stream(sid)]
    assert versions == list(range(1, written + 1))


async def test_recorded_facts_from_racing_writers_all_land(store: EventStore) -> None:
    """`CommandHandler.record` (progress reports, logins) takes the next version when another
    writer took the one it tried: no fact is lost to a race."""
    sid = stream()
    handler = CommandHandler(store)
    context = CommandContext(metadata=META)
    await asyncio.gather(
        *(
            handler.record(sid, [CounterIncremented(counter_id=sid, by=n)], context)
            for n in range(8)
        )
    )
    recorded = await store.read_stream(sid)
    assert [r.stream_version for r in recorded] == list(range(1, 9))
    assert sorted(r.event.by for r in recorded) == list(range(8))  # type: ignore[attr-defined]


async def test_a_repeated_idempotency_key_returns_the_first_result_and_appends_nothing(
    store: EventStore,
) -> None:
    sid = stream()
    key = f"test:{uuid.uuid4()}"
    first = await store.append(
        sid,
        [CounterIncremented(counter_id=sid, by=1)],
        META,
        expected_version=0,
        idempotency_key=key,
        request_hash="h",
    )
    again = await store.append(
        sid,
        [CounterIncremented(counter_id=sid, by=1)],
        META,
        expected_version=0,
        idempotency_key=key,
        request_hash="h",
    )
    assert again.duplicate
    assert not first.duplicate
    assert (again.first_position, again.stream_version) == (
        first.first_position,
        first.stream_version,
    )
    assert len(await store.read_stream(sid)) == 1


async def test_concurrent_requests_with_one_idempotency_key_append_once(store: EventStore) -> None:
    sid = stream()
    key = f"test:{uuid.uuid4()}"
    results = await asyncio.gather(
        *(
            store.append(
                sid,
                [CounterIncremented(counter_id=sid, by=1)],
                META,
                expected_version=None,
                idempotency_key=key,
                request_hash="h",
            )
            for _ in range(10)
        )
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len(await store.read_stream(sid)) == 1


async def test_an_idempotency_key_reused_for_another_request_is_refused(store: EventStore) -> None:
    sid = stream()
    key = f"test:{uuid.uuid4()}"
    await store.append(
        sid,
        [CounterIncremented(counter_id=sid, by=1)],
        META,
        expected_version=0,
        idempotency_key=key,
        request_hash="first",
    )
    with pytest.raises(IdempotencyKeyReusedError):
        await store.append(
            sid,
            [CounterIncremented(counter_id=sid, by=2)],
            META,
            expected_version=1,
            idempotency_key=key,
            request_hash="second",
        )
    with pytest.raises(IdempotencyKeyReusedError):
        await store.previous_result(key, "second")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{}' WHERE stream_id = $1",
        "DELETE FROM events WHERE stream_id = $1",
    ],
)
async def test_history_is_immutable(store: EventStore, pool: asyncpg.Pool, statement: str) -> None:
    sid = stream()
    await store.append(sid, [CounterIncremented(counter_id=sid, by=1)], META, expected_version=0)
    with pytest.raises(asyncpg.PostgresError, match="immutable"):
        await pool.execute(statement, sid)
    with pytest.raises(asyncpg.PostgresError, match="immutable"):
        await pool.execute("TRUNCATE events")
    assert len(await store.read_stream(sid)) == 1


async def test_an_append_must_be_the_first_write_of_its_transaction(pool: asyncpg.Pool) -> None:
    """Otherwise its transaction id could be older than its events' order in the stream."""
    event = ['{"type":"CounterIncremented","counter_id":"x","by":1}']
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("CREATE TEMP TABLE scratch (x int)")
        await connection.execute("INSERT INTO scratch VALUES (1)")
        with pytest.raises(asyncpg.PostgresError, match="first write"):
            await connection.fetchrow(
                "SELECT * FROM append_events($1, 0, 'key', NULL, $2, $3, $4, $5, $6)",
                stream(),
                [uuid.uuid4()],
                ["CounterIncremented"],
                [1],
                event,
                ['{"actor":"t"}'],
            )
    for statement, arguments in (
        (_APPEND_ONE_SQL, (uuid.uuid4(), "CounterIncremented", 1, event[0], '{"actor":"t"}')),
        (_APPEND_MANY_SQL, ([uuid.uuid4()], ["CounterIncremented"], [1], event, ['{"actor":"t"}'])),
    ):
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("CREATE TEMP TABLE IF NOT EXISTS scratch (x int)")
            await connection.execute("INSERT INTO scratch VALUES (1)")
            assert await connection.fetchrow(statement, stream(), 0, *arguments) is None


class TemperatureRecorded(Event, frozen=True):
    """v1 stored `celsius` as a string; v2 stores a number and the unit."""

    schema_version = 2
    sensor: str
    value: float
    unit: str


@upcaster("TemperatureRecorded", from_version=1)
def _temperature_v1_to_v2(data: dict[str, object]) -> dict[str, object]:
    return {
        "type": data["type"],
        "sensor": data["sensor"],
        "value": float(str(data["celsius"])),
        "unit": "C",
    }


async def test_old_schema_versions_decode_through_their_upcasters(
    pool: asyncpg.Pool, store: EventStore
) -> None:
    sid = f"sensor-{uuid.uuid4()}"
    await pool.fetchrow(
        "SELECT * FROM append_events($1, 0, NULL, NULL, $2, $3, $4, $5, $6)",
        sid,
        [uuid.uuid4()],
        ["TemperatureRecorded"],
        [1],
        ['{"type":"TemperatureRecorded","sensor":"s1","celsius":"21.5"}'],
        ['{"actor":"t"}'],
    )
    [recorded] = await store.read_stream(sid)
    assert recorded.schema_version == 1
    assert recorded.event == TemperatureRecorded(sensor="s1", value=21.5, unit="C")
    current = decode_event(
        "TemperatureRecorded",
        2,
        b'{"type":"TemperatureRecorded","sensor":"s","value":1,"unit":"C"}',
    )
    assert current == TemperatureRecorded(sensor="s", value=1.0, unit="C")
