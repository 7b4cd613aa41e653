"""A stream's events as the API shows them: `GET …/{id}/history`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from aiplatform.api.envelope import Envelope, paginated
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.eventstore.store import EventStore


class HistoryEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


def history_event(recorded: RecordedEvent) -> HistoryEvent:
    data = msgspec.to_builtins(recorded.event)
    data.pop("type", None)
    return HistoryEvent(
        position=recorded.global_position,
        version=recorded.stream_version,
        type=recorded.event_type,
        data=data,
        metadata=msgspec.to_builtins(recorded.metadata),
        recorded_at=recorded.recorded_at,
    )


async def history_page(
    store: EventStore,
    stream_id: str,
    page: int,
    limit: int,
    *,
    missing: Exception | None = None,
) -> Envelope[list[HistoryEvent]]:
    """A page of the stream's events. `missing`: raised when the stream has none at all (for
    resources whose route does not look them up first)."""
    events, total = await store.read_stream_page(stream_id, offset=(page - 1) * limit, limit=limit)
    if total == 0 and missing is not None:
        raise missing
    return paginated([history_event(e) for e in events], total=total, page=page, limit=limit)
