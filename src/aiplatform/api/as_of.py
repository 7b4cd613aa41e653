"""Time travel: `GET …/{id}?as_of=<ISO time or event position>` folds the resource's stream up
to that point, so it shows the resource as it was then (the read models only know the present).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from litestar.params import QueryParameter

from aiplatform.api.errors import RequestError
from aiplatform.domain.errors import NotFoundError
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.eventstore.store import EventStore, record_from_row

AsOfParameter = Annotated[
    str | None,
    QueryParameter(
        required=False,
        description="show the resource as it was at this time (ISO 8601; UTC when no offset "
        "is given) or at this event position (an integer, as in a write's `meta.position`)",
        max_length=64,
    ),
]

# An offset's `+` that the client did not percent-encode arrives as a space.
_UNENCODED_PLUS = re.compile(r"(T[\d:.]+) (\d\d:?\d\d)$")

# A stream's later versions always have later positions (each append reads the version the
# previous one committed); times are those of the appending transactions.
_EVENTS_AS_OF = """
SELECT stream_id, stream_version, global_position, event_id, event_type, schema_version,
       data::text AS data, metadata::text AS metadata, recorded_at
  FROM events
 WHERE stream_id = $1
   AND stream_version <= (SELECT coalesce(max(stream_version), 0) FROM events
                           WHERE stream_id = $1
                             AND ($2::bigint IS NULL OR global_position <= $2)
                             AND ($3::timestamptz IS NULL OR recorded_at <= $3))
 ORDER BY stream_version
"""


@dataclass(frozen=True)
class AsOf:
    """Exactly one of the two is set."""

    position: int | None = None
    time: datetime | None = None

    def __str__(self) -> str:
        return f"position {self.position}" if self.time is None else self.time.isoformat()


def parse_as_of(raw: str | None) -> AsOf | None:
    if raw is None:
        return None
    text = raw.strip()
    if text.isdigit():
        return AsOf(position=int(text))
    try:
        moment = datetime.fromisoformat(_UNENCODED_PLUS.sub(r"\1+\2", text.replace("Z", "+00:00")))
    except ValueError:
        raise RequestError(
            f"as_of must be an ISO 8601 time (2025-01-31T12:00:00Z) or an event position "
            f"(a non-negative integer), got {raw!r}",
            field="as_of",
        ) from None
    return AsOf(time=moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


async def events_as_of(
    store: EventStore, stream_id: str, as_of: AsOf | None
) -> list[RecordedEvent]:
    """The stream's events up to `as_of` (all of them without it), oldest first."""
    if as_of is None:
        return await store.read_stream(stream_id)
    rows = await store.pool.fetch(_EVENTS_AS_OF, stream_id, as_of.position, as_of.time)
    return [record_from_row(row) for row in rows]


class NotYetError(NotFoundError):
    """The resource exists now but did not yet at `as_of` (404 like any missing resource)."""

    def __init__(self, resource: str, as_of: AsOf):
        super().__init__(f"{resource} did not exist yet at {as_of}")


async def past_events(
    store: EventStore, stream_id: str, as_of: AsOf | None, resource: str
) -> list[RecordedEvent]:
    """`events_as_of`, refusing with a clear 404 a time before the resource existed. Empty only
    for a stream that does not exist at all: the caller answers its usual not-found."""
    events = await events_as_of(store, stream_id, as_of)
    if as_of is not None and not events and await store.stream_version(stream_id) > 0:
        raise NotYetError(resource, as_of)
    return events


def as_of_meta(as_of: AsOf, events: list[RecordedEvent]) -> dict[str, object]:
    """Says which point of the history the answer shows."""
    return {"as_of": str(as_of), "position": events[-1].global_position}
