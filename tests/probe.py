"""A read model for testing the projector itself: it records every event it applies, without
a unique constraint, so an event applied twice shows up as two rows."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from aiplatform.cache import Cache
from aiplatform.eventstore.codec import Event, RecordedEvent
from aiplatform.projectors.read_models import ReadModel


class ProbeRecorded(Event, frozen=True):
    probe: str
    n: int


PROBE_DDL = """
CREATE TABLE seen (global_position BIGINT NOT NULL, stream_id TEXT NOT NULL, n INT NOT NULL);
CREATE INDEX seen_stream ON seen (stream_id);
"""


class ProbeProjector:
    event_types = frozenset({"ProbeRecorded"})

    def __init__(self, name: str):
        self.read_model = ReadModel(name=name, ddl=PROBE_DDL)
        self.table = self.read_model.table("seen")

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        assert isinstance(recorded.event, ProbeRecorded)
        await connection.execute(
            f"INSERT INTO {self.table} (global_position, stream_id, n) VALUES ($1, $2, $3)",
            recorded.global_position,
            recorded.stream_id,
            recorded.event.n,
        )

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        return None
