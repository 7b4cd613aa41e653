"""Notifications read model: `projections/notifications.sql`, projected from the events they
tell about, and marked read from `inbox-*` streams.

- a training job that succeeded, failed or was cancelled: its submitter (the actor of its
  `JobSubmitted`);
- a membership granted, changed or revoked: that member;
- a dataset version's quality report with problems: the version's uploader;

except when the recipient did it themselves (cancelled their own pending job, left a project).

The final events do not name whom they concern, so the projector remembers what it needs from
the events before them in tables of its own. A notification's id comes from its source event's
id, so rebuilding the read model from the log keeps ids, and the `inbox-*` events that mark
them read apply to the rebuilt rows alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
import msgspec

from aiplatform.cache import Cache
from aiplatform.domain.datasets import (
    DatasetCreated,
    DatasetQualityReported,
    DatasetVersionCommitted,
)
from aiplatform.domain.inbox import AllNotificationsRead, NotificationRead
from aiplatform.domain.jobs import JobCancelled, JobFailed, JobSubmitted, JobSucceeded
from aiplatform.domain.projects import MemberGranted, MemberRevoked, ProjectCreated, ProjectUpdated
from aiplatform.eventstore.codec import RecordedEvent
from aiplatform.projectors.read_models import ReadModel, load_read_model

# Fixed forever: notification ids are uuid5 names in it.
NOTIFICATION_NAMESPACE = uuid.UUID("5b0f6a1e-2c1d-4f53-9a57-0d7c1f3e8b42")
# A failed job's error and a quality problem are shown up to this many characters.
MAX_DETAIL_CHARS = 500
# Messages waiting for their batch's commit; more than this many means batches rolled back and
# were applied by another worker, and the leftovers are dropped.
MAX_UNSENT = 10_000
# A succeeded job's body lists this many of its final metrics, `val_loss` first.
SHOWN_METRICS = 3
_FIRST_METRICS = ("val_loss", "loss", "val_accuracy", "accuracy")

_json = msgspec.json.Encoder()


def notification_id(source_event_id: str, user_id: str) -> uuid.UUID:
    return uuid.uuid5(NOTIFICATION_NAMESPACE, f"{source_event_id}:{user_id}")


def notifications_channel(user_id: str) -> str:
    """The pub/sub channel of a user's notifications."""
    return f"notifications:{user_id}"


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """A notification about to be projected."""

    user_id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any]


class NotificationMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What subscribers of a user's channel receive: enough to refetch. `position` is the
    event's global position (for a new notification, its source event's)."""

    position: int
    type: Literal["notification", "read", "all_read"]
    id: str | None = None


# The texts ------------------------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def metrics_summary(metrics: dict[str, float]) -> str:
    """`val_loss 1.23, val_accuracy 0.912`: the usual headline metrics first, then by name."""
    names = sorted(metrics, key=lambda name: (_metric_rank(name), name))
    return ", ".join(f"{name} {metrics[name]:.4g}" for name in names[:SHOWN_METRICS])


def _metric_rank(name: str) -> int:
    return _FIRST_METRICS.index(name) if name in _FIRST_METRICS else len(_FIRST_METRICS)


def job_succeeded(job: asyncpg.Record, event: JobSucceeded) -> Notice:
    summary = metrics_summary(event.metrics)
    return Notice(
        user_id=job["submitted_by"],
        kind="job_succeeded",
        title=f"Training job `{job['name']}` succeeded",
        body=summary or "It finished without reporting metrics.",
        data={"job_id": event.job_id, "project_id": job["project_id"], "model_id": event.model_id},
    )


def job_failed(job: asyncpg.Record, event: JobFailed) -> Notice:
    return Notice(
        user_id=job["submitted_by"],
        kind="job_failed",
        title=f"Training job `{job['name']}` failed",
        body=_clip(_first_line(event.error)) or "It recorded no error message.",
        data={"job_id": event.job_id, "project_id": job["project_id"]},
    )


def job_cancelled(job: asyncpg.Record, event: JobCancelled) -> Notice:
    return Notice(
        user_id=job["submitted_by"],
        kind="job_cancelled",
        title=f"Training job `{job['name']}` was cancelled",
        body=f"It stopped at step {event.step}."
        if event.step
        else "It was cancelled before it trained a step.",
        data={"job_id": event.job_id, "project_id": job["project_id"]},
    )


def member_granted(project: str, event: MemberGranted, previous_role: str | None) -> Notice:
    data = {"project_id": event.project_id, "role": event.role}
    if previous_role is None:
        return Notice(
            user_id=event.user_id,
            kind="member_added",
            title=f"Added to project {project}",
            body=f"You were added to project {project} as {event.role}.",
            data=data,
        )
    return Notice(
        user_id=event.user_id,
        kind="member_role_changed",
        title=f"Your role in project {project} changed",
        body=f"You are now {event.role} in project {project} (was {previous_role}).",
        data=data,
    )


def member_revoked(project: str, event: MemberRevoked) -> Notice:
    return Notice(
        user_id=event.user_id,
        kind="member_removed",
        title=f"Removed from project {project}",
        body=f"You were removed from project {project}.",
        data={"project_id": event.project_id},
    )


def quality_problems(
    upload: asyncpg.Record, event: DatasetQualityReported, problems: list[str]
) -> Notice:
    count = len(problems)
    more = f" (and {count - 1} more)" if count > 1 else ""
    return Notice(
        user_id=upload["uploaded_by"],
        kind="dataset_quality_problems",
        title=f"Dataset `{upload['name']}` {event.version} has {count} quality "
        f"problem{'' if count == 1 else 's'}",
        body=_clip(problems[0]) + more,
        data={
            "dataset_id": event.dataset_id,
            "version": event.version,
            "project_id": upload["project_id"],
        },
    )


def reported_problems(report: dict[str, Any]) -> list[str]:
    problems = report.get("problems")
    if not isinstance(problems, list):
        return []
    return [str(problem) for problem in problems if str(problem).strip()]


# The projector --------------------------------------------------------------------------------


class NotificationsProjector:
    event_types = frozenset(
        cls.__name__
        for cls in (
            JobSubmitted,
            JobSucceeded,
            JobFailed,
            JobCancelled,
            ProjectCreated,
            ProjectUpdated,
            MemberGranted,
            MemberRevoked,
            DatasetCreated,
            DatasetVersionCommitted,
            DatasetQualityReported,
            NotificationRead,
            AllNotificationsRead,
        )
    )

    def __init__(self, read_model: ReadModel | None = None):
        self.read_model = read_model or load_read_model("notifications")
        self.table = self.read_model.table("notifications")
        self.jobs = self.read_model.table("job_submissions")
        self.projects = self.read_model.table("project_names")
        self.roles = self.read_model.table("project_roles")
        self.datasets = self.read_model.table("dataset_names")
        self.uploads = self.read_model.table("dataset_uploads")
        # Messages of applied events by global position, sent once their batch has committed.
        # Those of a batch that rolled back are applied, and replaced, again.
        self._unsent: dict[int, tuple[str, NotificationMessage]] = {}

    async def apply(self, connection: asyncpg.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case JobSubmitted():
                await connection.execute(
                    f"INSERT INTO {self.jobs} (job_id, project_id, name, submitted_by) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    event.job_id,
                    event.project_id,
                    event.name,
                    recorded.metadata.actor,
                )
            case JobSucceeded() | JobFailed() | JobCancelled():
                await self._job_finished(connection, recorded, event)
            case ProjectCreated():
                await connection.execute(
                    f"INSERT INTO {self.projects} (project_id, name) VALUES ($1, $2) "
                    "ON CONFLICT (project_id) DO UPDATE SET name = excluded.name",
                    event.project_id,
                    event.name,
                )
                await self._set_role(connection, event.project_id, event.owner_id, "owner")
            case ProjectUpdated() if isinstance(event.name, str):
                await connection.execute(
                    f"UPDATE {self.projects} SET name = $2 WHERE project_id = $1",
                    event.project_id,
                    event.name,
                )
            case MemberGranted():
                await self._member_granted(connection, recorded, event)
            case MemberRevoked():
                await connection.execute(
                    f"DELETE FROM {self.roles} WHERE project_id = $1 AND user_id = $2",
                    event.project_id,
                    event.user_id,
                )
                project = await self._project_name(connection, event.project_id)
                await self._notify(connection, recorded, member_revoked(project, event))
            case DatasetCreated():
                await connection.execute(
                    f"INSERT INTO {self.datasets} (dataset_id, project_id, name) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    event.dataset_id,
                    event.project_id,
                    event.name,
                )
            case DatasetVersionCommitted():
                await connection.execute(
                    f"INSERT INTO {self.uploads} (dataset_id, version, uploaded_by) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    event.dataset_id,
                    event.version,
                    event.uploaded_by,
                )
            case DatasetQualityReported():
                await self._quality_reported(connection, recorded, event)
            case NotificationRead():
                await self._read(connection, recorded, event)
            case AllNotificationsRead():
                await connection.execute(
                    f"UPDATE {self.table} SET read = true "
                    "WHERE user_id = $1 AND position <= $2 AND NOT read",
                    event.user_id,
                    event.up_to_position,
                )
                message = NotificationMessage(position=recorded.global_position, type="all_read")
                self._unsent[recorded.global_position] = (event.user_id, message)

    async def _job_finished(
        self,
        connection: asyncpg.Connection,
        recorded: RecordedEvent,
        event: JobSucceeded | JobFailed | JobCancelled,
    ) -> None:
        job = await connection.fetchrow(
            f"SELECT project_id, name, submitted_by FROM {self.jobs} WHERE job_id = $1",
            event.job_id,
        )
        if job is None:
            return  # a job stream without its submission: nobody to tell
        match event:
            case JobSucceeded():
                notice = job_succeeded(job, event)
            case JobFailed():
                notice = job_failed(job, event)
            case JobCancelled():
                notice = job_cancelled(job, event)
        await self._notify(connection, recorded, notice)

    async def _member_granted(
        self, connection: asyncpg.Connection, recorded: RecordedEvent, event: MemberGranted
    ) -> None:
        previous: str | None = await connection.fetchval(
            f"SELECT role FROM {self.roles} WHERE project_id = $1 AND user_id = $2",
            event.project_id,
            event.user_id,
        )
        await self._set_role(connection, event.project_id, event.user_id, event.role)
        if previous == event.role:
            return
        project = await self._project_name(connection, event.project_id)
        await self._notify(connection, recorded, member_granted(project, event, previous))

    async def _quality_reported(
        self,
        connection: asyncpg.Connection,
        recorded: RecordedEvent,
        event: DatasetQualityReported,
    ) -> None:
        problems = reported_problems(event.report)
        if not problems:
            return
        upload = await connection.fetchrow(
            f"SELECT u.uploaded_by, coalesce(d.name, u.dataset_id) AS name, "
            f"coalesce(d.project_id, '') AS project_id FROM {self.uploads} u "
            f"LEFT JOIN {self.datasets} d ON d.dataset_id = u.dataset_id "
            "WHERE u.dataset_id = $1 AND u.version = $2",
            event.dataset_id,
            event.version,
        )
        if upload is not None:
            await self._notify(connection, recorded, quality_problems(upload, event, problems))

    async def _read(
        self, connection: asyncpg.Connection, recorded: RecordedEvent, event: NotificationRead
    ) -> None:
        try:
            notification = uuid.UUID(event.notification_id)
        except ValueError:
            return
        await connection.execute(
            f"UPDATE {self.table} SET read = true WHERE id = $1 AND user_id = $2",
            notification,
            event.user_id,
        )
        message = NotificationMessage(
            position=recorded.global_position, type="read", id=event.notification_id
        )
        self._unsent[recorded.global_position] = (event.user_id, message)

    async def _set_role(
        self, connection: asyncpg.Connection, project_id: str, user_id: str, role: str
    ) -> None:
        await connection.execute(
            f"INSERT INTO {self.roles} (project_id, user_id, role) VALUES ($1, $2, $3) "
            "ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
            project_id,
            user_id,
            role,
        )

    async def _project_name(self, connection: asyncpg.Connection, project_id: str) -> str:
        name: str | None = await connection.fetchval(
            f"SELECT name FROM {self.projects} WHERE project_id = $1", project_id
        )
        return name if name is not None else project_id

    async def _notify(
        self, connection: asyncpg.Connection, recorded: RecordedEvent, notice: Notice
    ) -> None:
        if notice.user_id == recorded.metadata.actor:
            return  # nobody needs telling what they just did
        identifier = notification_id(recorded.event_id, notice.user_id)
        await connection.execute(
            f"INSERT INTO {self.table} (id, user_id, kind, title, body, data, created_at, "
            "position) VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8) "
            "ON CONFLICT (id) DO NOTHING",
            identifier,
            notice.user_id,
            notice.kind,
            notice.title,
            notice.body,
            _json.encode(notice.data).decode(),
            recorded.recorded_at,
            recorded.global_position,
        )
        message = NotificationMessage(
            position=recorded.global_position, type="notification", id=str(identifier)
        )
        self._unsent[recorded.global_position] = (notice.user_id, message)

    async def after_commit(self, cache: Cache, events: Sequence[RecordedEvent]) -> None:
        """Tells each recipient's channel about the batch's new notifications and reads."""
        sent = [self._unsent.pop(recorded.global_position, None) for recorded in events]
        if len(self._unsent) > MAX_UNSENT:
            self._unsent.clear()
        for unsent in sent:
            if unsent is not None:
                user_id, message = unsent
                await cache.publish(notifications_channel(user_id), _json.encode(message))
