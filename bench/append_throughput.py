"""Append throughput of the event store against a bare INSERT of the same rows.

Both sides run in the same process, on the same pool, against tables with the same columns,
defaults and indexes (the baseline table is `LIKE events INCLUDING ALL`), and build the same
rows the same way (msgspec encoding, one uuid4 per event). What differs is the store's own
logic: the `append_events` function (expected-version check, ordinal stream versions, returned
positions) and the Python around it.

Every command creates a new stream with expected_version=0, like a "create project" command:
the common write, and one where writers never contend for a stream.

    .venv/bin/python bench/append_throughput.py [--seconds 2.5] [--writers 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from dataclasses import dataclass

import asyncpg

from aiplatform.eventstore.codec import encode
from aiplatform.eventstore.store import EventStore, create_pool
from benchlib import (
    ADMIN_DATABASE_URL,
    METADATA,
    Command,
    Rate,
    make_events,
    median,
    new_stream_id,
    paired_ratio,
    run_writers,
    scratch_database,
    warm_pool,
)

BASELINE_TABLE = "bench_baseline_events"
BASELINE_COLUMNS = "stream_id, stream_version, event_id, event_type, schema_version, data, metadata"
COLUMN_COUNT = 7
BATCH_SIZES = (1, 10)
WARM_UP_S = 0.5


@dataclass(frozen=True)
class CaseResult:
    batch: int
    store: list[Rate]
    baseline: list[Rate]

    def store_rate(self) -> float:
        return median([rate.per_second for rate in self.store])

    def baseline_rate(self) -> float:
        return median([rate.per_second for rate in self.baseline])

    def ratio(self) -> float:
        return paired_ratio(
            [rate.per_second for rate in self.store], [rate.per_second for rate in self.baseline]
        )


def baseline_insert_sql(batch: int) -> str:
    """One multi-row INSERT per command, the way a hand-written writer would do it."""
    rows = []
    for row in range(batch):
        first = row * COLUMN_COUNT + 1
        rows.append("(" + ", ".join(f"${first + i}" for i in range(COLUMN_COUNT)) + ")")
    return f"INSERT INTO {BASELINE_TABLE} ({BASELINE_COLUMNS}) VALUES {', '.join(rows)}"


def store_command(store: EventStore, batch: int) -> Command:
    async def command() -> None:
        await store.append(new_stream_id(), make_events(batch), METADATA, expected_version=0)

    return command


def baseline_command(pool: asyncpg.Pool, batch: int) -> Command:
    sql = baseline_insert_sql(batch)

    async def command() -> None:
        stream_id = new_stream_id()
        # The same client-side work as EventStore.append: encode each event and the
        # metadata, and give each event an id.
        metadata = encode(METADATA)
        arguments: list[object] = []
        for version, event in enumerate(make_events(batch), start=1):
            arguments += (
                stream_id,
                version,
                uuid.uuid4(),
                type(event).__name__,
                type(event).schema_version,
                encode(event),
                metadata,
            )
        await pool.execute(sql, *arguments)

    return command


async def create_baseline_table(pool: asyncpg.Pool) -> None:
    # INCLUDING ALL copies the identity column (with its own sequence), the xid8 and now()
    # defaults, the CHECK, the primary key, the unique event_id and both indexes. Triggers are
    # not copied; the store's fire only on UPDATE, DELETE and TRUNCATE, never on an append.
    await pool.execute(f"CREATE TABLE {BASELINE_TABLE} (LIKE events INCLUDING ALL)")


async def measure_case(
    pool: asyncpg.Pool, store: EventStore, batch: int, writers: int, seconds: float, rounds: int
) -> CaseResult:
    sides = {"store": store_command(store, batch), "baseline": baseline_command(pool, batch)}
    for command in sides.values():
        await run_writers(command, writers, WARM_UP_S)  # prepares statements, fills caches
    rates: dict[str, list[Rate]] = {"store": [], "baseline": []}
    for round_number in range(rounds):
        # Alternate which side goes first, so neither always inherits the other's checkpoint
        # or autovacuum work.
        order = ["store", "baseline"] if round_number % 2 == 0 else ["baseline", "store"]
        for side in order:
            rates[side].append(await run_writers(sides[side], writers, seconds))
    return CaseResult(batch=batch, store=rates["store"], baseline=rates["baseline"])


async def measure(url: str, writers: int, seconds: float, rounds: int) -> list[CaseResult]:
    pool = await create_pool(url, max_size=writers, application_name="aiplatform-bench")
    try:
        await create_baseline_table(pool)
        await warm_pool(pool, writers)
        store = EventStore(pool)
        return [
            await measure_case(pool, store, batch, writers, seconds, rounds)
            for batch in BATCH_SIZES
        ]
    finally:
        await pool.close()


def report(results: list[CaseResult], writers: int, seconds: float, rounds: int) -> None:
    print(
        f"append throughput: {writers} writers, median of {rounds} rounds of {seconds:g} s, "
        "one new stream per command (expected_version=0)"
    )
    print(f"{'case':<28}{'commands/s':>12}{'events/s':>12}")
    for result in results:
        label = f"{result.batch} event{'s' if result.batch > 1 else ''}/command"
        for side, rate in (("store", result.store_rate()), ("baseline", result.baseline_rate())):
            name = f"{side} {label}"
            print(f"{name:<28}{rate:>12,.0f}{rate * result.batch:>12,.0f}")
    for result in results:
        rounds_text = ", ".join(
            f"{s.per_second / b.per_second:.2f}"
            for s, b in zip(result.store, result.baseline, strict=True)
        )
        print(
            f"RATIO store/baseline, {result.batch} event(s)/command: {result.ratio():.2f} "
            f"(per round: {rounds_text})"
        )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="length of one measurement")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers (connections)")
    parser.add_argument("--rounds", type=int, default=3, help="store/baseline pairs per case")
    parser.add_argument("--admin-url", default=ADMIN_DATABASE_URL, help="creates the scratch db")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    with scratch_database(arguments.admin_url) as (_name, url):
        results = asyncio.run(measure(url, arguments.writers, arguments.seconds, arguments.rounds))
    report(results, arguments.writers, arguments.seconds, arguments.rounds)


if __name__ == "__main__":
    main()
