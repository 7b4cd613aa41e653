"""Which channels an event belongs to, and the channel names a client may ask for.

- `project:<id>`: the project's own stream and the streams of its experiments, datasets, model
  lines and jobs;
- `job:<id>`: the job's stream;
- `notifications`: the caller's notifications (and their own `inbox-<user>` stream, which marks
  them read);
- `admin`: every event;
- `gpu`: GPU samples, passed through from the monitor's pub/sub channel.

A stream never changes project, so the project of each stream is remembered (bounded); streams
whose first event names the project are learnt from it, others from one query for a batch.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable

import asyncpg

from aiplatform.domain.datasets import DatasetCreated
from aiplatform.domain.experiments import ExperimentCreated
from aiplatform.domain.jobs import JobSubmitted
from aiplatform.eventstore.codec import Event

ADMIN = "admin"
GPU = "gpu"
NOTIFICATIONS = "notifications"
MAX_CHANNELS = 32
MAX_REMEMBERED_STREAMS = 100_000

# Streams whose first event names their project.
_OWNED_PREFIXES = ("job-", "experiment-", "dataset-")
_FIRST_EVENTS = (JobSubmitted, ExperimentCreated, DatasetCreated)
_UUID_LENGTH = 36


class ChannelError(ValueError):
    """A channel name that is not one of the forms above."""


def parse_channels(raw: str) -> list[str]:
    """The distinct channels of a comma-separated list, in their order, in canonical form."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise ChannelError("name at least one channel: project:<id>, job:<id>, gpu, notifications")
    if len(names) > MAX_CHANNELS:
        raise ChannelError(f"at most {MAX_CHANNELS} channels per stream")
    channels: list[str] = []
    for name in names:
        channel = _canonical(name)
        if channel not in channels:
            channels.append(channel)
    return channels


def _canonical(name: str) -> str:
    if name in (ADMIN, GPU, NOTIFICATIONS):
        return name
    kind, _, identifier = name.partition(":")
    if kind in ("project", "job") and identifier:
        try:
            return f"{kind}:{uuid.UUID(identifier)}"
        except ValueError:
            raise ChannelError(f"{name}: {kind} ids are UUIDs") from None
    raise ChannelError(
        f"unknown channel {name!r}: use project:<id>, job:<id>, gpu, notifications or admin"
    )


def user_channel(user_id: str) -> str:
    """The internal channel of one user's notifications (clients ask for `notifications`)."""
    return f"{NOTIFICATIONS}:{user_id}"


def event_channels(stream_id: str, project_id: str | None) -> list[str]:
    """The channels of an event of `stream_id` in `project_id` (None: in no project)."""
    channels = [ADMIN]
    if project_id is not None:
        channels.append(f"project:{project_id}")
    if stream_id.startswith("job-"):
        channels.append(f"job:{stream_id.removeprefix('job-')}")
    elif stream_id.startswith("inbox-"):
        channels.append(user_channel(stream_id.removeprefix("inbox-")))
    return channels


class StreamProjects:
    """The project of each stream, remembered."""

    def __init__(self, pool: asyncpg.Pool, max_entries: int = MAX_REMEMBERED_STREAMS):
        self.pool = pool
        self.max_entries = max_entries
        self._known: OrderedDict[str, str | None] = OrderedDict()

    def learn(self, stream_id: str, event: Event) -> None:
        """Remembers what a stream's own events say about its project."""
        if isinstance(event, _FIRST_EVENTS) and stream_id not in self._known:
            self._remember(stream_id, event.project_id)

    def get(self, stream_id: str) -> str | None:
        """The stream's project; None for streams in no project, or not looked up yet."""
        if stream_id.startswith("project-"):
            return stream_id.removeprefix("project-")
        if stream_id.startswith("model-"):
            return stream_id[len("model-") : len("model-") + _UUID_LENGTH]
        return self._known.get(stream_id)

    async def look_up(self, stream_ids: Iterable[str]) -> None:
        """Finds the project of the streams not known yet from their first event."""
        unknown = sorted(
            {s for s in stream_ids if s.startswith(_OWNED_PREFIXES) and s not in self._known}
        )
        if not unknown:
            return
        rows = await self.pool.fetch(
            "SELECT stream_id, data->>'project_id' AS project_id FROM events "
            "WHERE stream_id = ANY($1::text[]) AND stream_version = 1",
            unknown,
        )
        found = {row["stream_id"]: row["project_id"] for row in rows}
        for stream_id in unknown:
            self._remember(stream_id, found.get(stream_id))

    def _remember(self, stream_id: str, project_id: str | None) -> None:
        self._known[stream_id] = project_id
        if len(self._known) > self.max_entries:
            self._known.popitem(last=False)
