"""Reading the log and the notifications read model between two cursors, in the order live
streams deliver them: `(transaction_id, global_position)`, the order projectors read in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from aiplatform.eventstore.codec import Event, decode_event
from aiplatform.streams.channels import NOTIFICATIONS
from aiplatform.streams.frames import LiveMessage, frame
from aiplatform.streams.heads import Cursor

# Ordered by the table's columns: a bare `transaction_id` would be the text one selected.
_EVENTS_SQL = """
SELECT transaction_id::text AS transaction_id, global_position, stream_id, event_type,
       schema_version, data::text AS data, recorded_at
  FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND (transaction_id, global_position) <= ($3::text::xid8, $4)
   AND ($6::text[] IS NULL OR stream_id = ANY($6::text[]))
 ORDER BY events.transaction_id, events.global_position
 LIMIT $5
"""
_NOTIFICATION_COLUMNS = (
    "n.id, n.user_id, n.kind, n.title, n.body, n.data::text AS data, n.read, n.created_at, "
    "n.position, e.transaction_id::text AS transaction_id, e.stream_id"
)


@dataclass(frozen=True)
class LoggedEvent:
    cursor: Cursor
    stream_id: str
    event_type: str
    recorded_at: datetime
    event: Event

    def frame(self, channel: str) -> bytes:
        return frame(
            LiveMessage(
                channel=channel,
                stream_id=self.stream_id,
                type=self.event_type,
                position=self.cursor[1],
                recorded_at=self.recorded_at,
                data=self.event,
            )
        )


@dataclass(frozen=True)
class ProjectedNotification:
    cursor: Cursor
    user_id: str
    frame: bytes


def _cursor(row: asyncpg.Record, position_column: str) -> Cursor:
    return (int(row["transaction_id"]), int(row[position_column]))


async def read_events(
    pool: asyncpg.Pool,
    after: Cursor,
    up_to: Cursor,
    limit: int,
    stream_ids: list[str] | None = None,
) -> list[LoggedEvent]:
    rows = await pool.fetch(
        _EVENTS_SQL, str(after[0]), after[1], str(up_to[0]), up_to[1], limit, stream_ids
    )
    return [
        LoggedEvent(
            cursor=_cursor(row, "global_position"),
            stream_id=row["stream_id"],
            event_type=row["event_type"],
            recorded_at=row["recorded_at"],
            event=decode_event(row["event_type"], row["schema_version"], row["data"]),
        )
        for row in rows
    ]


def _notification(row: asyncpg.Record) -> ProjectedNotification:
    message = LiveMessage(
        channel=NOTIFICATIONS,
        stream_id=row["stream_id"],
        type="notification",
        position=row["position"],
        recorded_at=row["created_at"],
        data={
            "id": str(row["id"]),
            "kind": row["kind"],
            "title": row["title"],
            "body": row["body"],
            "data": msgspec.Raw(row["data"].encode()),
            "read": row["read"],
        },
    )
    return ProjectedNotification(
        cursor=_cursor(row, "position"), user_id=row["user_id"], frame=frame(message)
    )


async def notifications_at(
    pool: asyncpg.Pool, table: str, positions: list[int], user_ids: list[str]
) -> list[ProjectedNotification]:
    """The notifications of these users projected from the events at these positions."""
    rows = await pool.fetch(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM {table} n "
        "JOIN events e ON e.global_position = n.position "
        "WHERE n.position = ANY($1::bigint[]) AND n.user_id = ANY($2::text[])",
        positions,
        user_ids,
    )
    return [_notification(row) for row in rows]


async def notifications_between(
    pool: asyncpg.Pool, table: str, user_id: str, after: Cursor, up_to: Cursor
) -> list[ProjectedNotification]:
    """A user's notifications whose source events lie between the cursors, in order."""
    rows = await pool.fetch(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM {table} n "
        "JOIN events e ON e.global_position = n.position "
        "WHERE n.user_id = $1 "
        "AND (e.transaction_id, e.global_position) > ($2::text::xid8, $3) "
        "AND (e.transaction_id, e.global_position) <= ($4::text::xid8, $5) "
        "ORDER BY e.transaction_id, e.global_position",
        user_id,
        str(after[0]),
        after[1],
        str(up_to[0]),
        up_to[1],
    )
    return [_notification(row) for row in rows]


async def cursor_of(pool: asyncpg.Pool, position: int) -> Cursor | None:
    """The cursor of the event at a global position; None when there is none."""
    transaction_id = await pool.fetchval(
        "SELECT transaction_id::text FROM events WHERE global_position = $1", position
    )
    return (int(transaction_id), position) if transaction_id is not None else None


async def checkpoint_cursor(pool: asyncpg.Pool, checkpoint: str) -> Cursor:
    row = await pool.fetchrow(
        "SELECT last_transaction_id::text AS transaction_id, last_global_position "
        "FROM projection_checkpoints WHERE projection = $1",
        checkpoint,
    )
    return _cursor(row, "last_global_position") if row is not None else (0, 0)
