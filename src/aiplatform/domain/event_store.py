"""Facts about the event store itself. Migrations change its tables, never its events; that
an admin ran them is recorded like any other act, so it shows in the audit log."""

from __future__ import annotations

from aiplatform.eventstore.codec import Event

STREAM_ID = "eventstore-migrations"


class EventStoreMigrated(Event, frozen=True):
    """`applied`: the revisions that were pending and are now applied, oldest first (empty
    when there was nothing to do)."""

    from_revision: str | None
    to_revision: str | None
    applied: list[str]
