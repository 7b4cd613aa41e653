"""/api/v2/streams: live server-sent events of the channels the caller may read.

Every channel is authorised when the stream opens, and the request is refused, naming the
channel, if the caller may not read one of them: `project:<id>` and `job:<id>` need
`project:read` in the project, `admin` the admin role; `gpu` and the caller's own
`notifications` need a login. While this process has no Redis subscription, streams do not open
(503); an open stream stays open through a Redis outage and gets the log's events from the
database meanwhile (up to a second late).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from litestar import Router, get
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from aiplatform.aggregates import PROJECTS
from aiplatform.api.errors import RequestError
from aiplatform.api.guards import Principal, check_project_permission, provide_principal
from aiplatform.api.owners import owning_project
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUTHENTICATED, PROJECT_READ
from aiplatform.domain.jobs import JobNotFoundError
from aiplatform.domain.projects import ProjectNotFoundError
from aiplatform.streams.channels import ADMIN, GPU, NOTIFICATIONS, ChannelError, parse_channels
from aiplatform.streams.feed import StreamFeed, Subscriber
from aiplatform.streams.frames import closing, opening
from aiplatform.streams.heads import Cursor
from aiplatform.streams.history import cursor_of

RETRY_AFTER_S = 5


@get(
    "/",
    operation_id="StreamEvents",
    summary="Live events of projects, jobs, GPUs and the caller's notifications",
    description="`channels`: a comma-separated list of `project:<id>`, `job:<id>`, `gpu`, "
    "`notifications` (the caller's own) and `admin` (every event; admins only). Each message's "
    "`id` is its event's position: reconnect with `Last-Event-ID` (or `?last_event_id=`) to get "
    "what was missed first, in order. A `: keep-alive` comment comes every 15 s.",
    media_type="text/event-stream",
    opt={"permission": AUTHENTICATED},  # and each channel, checked below
)
async def stream_events(
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    channels: Annotated[
        str | None, QueryParameter(description="comma-separated channels", required=False)
    ] = None,
    last_event_id: Annotated[
        int | None, QueryParameter(ge=0, required=False, description="as Last-Event-ID")
    ] = None,
    last_event_id_header: Annotated[
        str | None, HeaderParameter(name="last-event-id", required=False)
    ] = None,
) -> Stream:
    try:
        wanted = parse_channels(channels or "")
    except ChannelError as error:
        raise RequestError(str(error), field="channels") from None
    for channel in wanted:
        await _authorise(services, principal, channel)
    resume = await _resume_cursor(services, last_event_id_header, last_event_id)
    feed = services.streams
    if not feed.subscribed:
        raise HTTPException(
            status_code=503,
            detail="live streams are unavailable: this server cannot reach Redis; retry shortly",
            extra={"retry_after": RETRY_AFTER_S},
        )
    live = LiveStream(feed, principal, wanted, resume)
    return Stream(
        live.messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # Also after a disconnect that cancelled the response while a message was being sent.
        background=BackgroundTask(live.close),
    )


async def _authorise(services: Services, principal: Principal, channel: str) -> None:
    if channel in (GPU, NOTIFICATIONS):
        return
    if channel == ADMIN:
        if not principal.is_admin:
            raise PermissionDeniedException("you cannot read admin: it needs the admin role")
        return
    kind, _, identifier = channel.partition(":")
    refused = (
        f"you cannot read {channel}: there is no such {kind}, or you are not a member of its "
        "project"
    )
    project_id = identifier
    if kind == "job":
        try:
            project_id = str(await owning_project(services, "job_id", uuid.UUID(identifier)))
        except JobNotFoundError:
            raise NotFoundException(refused) from None
    project = await services.commands.current_state(PROJECTS, project_id)
    members = None if project is None or project.deleted else project.members
    try:
        await check_project_permission(services, principal, members, project_id, PROJECT_READ)
    except ProjectNotFoundError:
        raise NotFoundException(refused) from None
    except PermissionDeniedException as error:
        raise PermissionDeniedException(f"you cannot read {channel}: {error.detail}") from None


async def _resume_cursor(
    services: Services, header: str | None, parameter: int | None
) -> Cursor | None:
    """Where a reconnecting client left off: the cursor of the event it saw last."""
    if header is not None and not header.strip().isdigit():
        raise RequestError("Last-Event-ID must be an event position", field="Last-Event-ID")
    position = int(header) if header is not None else parameter
    if position is None:
        return None
    if position == 0:
        return (0, 0)
    cursor = await cursor_of(services.pool, position)
    if cursor is None:
        raise RequestError(f"no event has position {position}", field="Last-Event-ID")
    return cursor


class LiveStream:
    """One client's stream. It subscribes when the response starts, so a request that never
    gets that far holds nothing."""

    def __init__(
        self,
        feed: StreamFeed,
        principal: Principal,
        channels: list[str],
        resume: Cursor | None,
    ):
        self.feed = feed
        self.user_id = principal.user_id
        self.is_admin = principal.is_admin
        self.channels = channels
        self.resume = resume
        self.subscriber: Subscriber | None = None

    async def messages(self) -> AsyncIterator[bytes]:
        """What was missed (on resume), then live messages (and the feed's heartbeats), each
        exactly once. Leaving, however it happens, releases the subscription."""
        feed = self.feed
        subscriber = self.subscriber = feed.subscribe(self.user_id, self.is_admin, self.channels)
        try:
            yield opening()
            last = self.resume
            if self.resume is not None:
                async for _, data in feed.replay(subscriber, self.resume):
                    yield data
                last = max(self.resume, subscriber.start)
            while True:
                items = await subscriber.take()
                chunk = bytearray()
                for cursor, data in items:
                    if cursor is not None:
                        if last is not None and cursor <= last:
                            continue  # already sent from the log
                        last = cursor
                    chunk += data
                if chunk:
                    yield bytes(chunk)
                if subscriber.closed_because is not None:
                    yield closing(subscriber.closed_because)
                    return
        finally:
            await self.close()

    async def close(self) -> None:
        if self.subscriber is not None:
            self.feed.unsubscribe(self.subscriber)


def streams_router() -> Router:
    return Router(
        path="/streams",
        route_handlers=[stream_events],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["live"],
    )
