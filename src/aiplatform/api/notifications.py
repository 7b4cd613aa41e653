"""/api/v2/notifications: the caller's own notifications, and marking them read.

Notifications are projected from other events (a job finished, a membership changed, a
dataset version's quality report found problems); reading them appends to the caller's
`inbox-<user id>` stream. Nobody sees or marks another user's notifications, admins included.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from aiplatform.aggregates import INBOX
from aiplatform.api.context import command_context
from aiplatform.api.envelope import After, Envelope, Limit, Page, paginated
from aiplatform.api.guards import Principal, provide_principal
from aiplatform.api.responses import write_response
from aiplatform.api.services import Services, provide_services
from aiplatform.auth.permissions import AUTHENTICATED
from aiplatform.domain import inbox as domain
from aiplatform.queries.notifications import NotificationView


class AllNotificationsReadView(msgspec.Struct, frozen=True, kw_only=True):
    # Notifications up to this event position are read; null when nothing was unread.
    up_to_position: int | None


@get(
    "/",
    operation_id="ListNotifications",
    summary="The caller's notifications, newest first",
    description="`meta.unread` counts the caller's unread notifications, whatever the filter. "
    "With `unread=true` only the unread ones, with `unread=false` only the read ones.",
    opt={"permission": AUTHENTICATED},
)
async def list_notifications(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    unread: Annotated[bool | None, QueryParameter()] = None,
    page: Page = 1,
    limit: Limit = 20,
    after: After = None,
) -> Envelope[list[NotificationView]]:
    waited = await services.read_after(request, services.notifications.read_model, after)
    found = await services.notifications.page(
        principal.user_id, read=None if unread is None else not unread, page=page, limit=limit
    )
    envelope = paginated(found.items, total=found.total, page=page, limit=limit)
    meta = {**(envelope.meta or {}), "unread": found.unread}
    if waited is False:
        meta["stale"] = True
    return msgspec.structs.replace(envelope, meta=meta)


@post(
    "/{notification_id:uuid}/read",
    operation_id="MarkNotificationRead",
    summary="Mark one of the caller's notifications read",
    description="Marking a read notification again changes nothing. Another user's "
    "notification answers 404, like one that does not exist.",
    status_code=200,
    opt={"permission": AUTHENTICATED},
)
async def mark_notification_read(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    notification_id: FromPath[uuid.UUID],
) -> Response[Envelope[NotificationView]]:
    notification = await services.notifications.get(principal.user_id, notification_id)
    if notification is None:
        raise domain.NotificationNotFoundError(str(notification_id))
    command = domain.MarkNotificationRead(
        user_id=principal.user_id, notification_id=str(notification_id)
    )
    result = await services.commands.handle(
        INBOX, principal.user_id, command, await command_context(request)
    )
    return write_response(result, msgspec.structs.replace(notification, read=True))


@post(
    "/read-all",
    operation_id="MarkAllNotificationsRead",
    summary="Mark all the caller's notifications read",
    description="Marks what the caller has up to their newest notification now (with `after`, "
    "once the read model has that event); notifications that arrive later stay unread. With "
    "nothing unread, nothing is recorded.",
    status_code=200,
    opt={"permission": AUTHENTICATED},
)
async def mark_all_notifications_read(
    request: Request[Any, Any, State],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    after: After = None,
) -> Response[Envelope[AllNotificationsReadView]]:
    await services.read_after(request, services.notifications.read_model, after)
    up_to = await services.notifications.newest_position(principal.user_id)
    command = domain.MarkAllNotificationsRead(user_id=principal.user_id, up_to_position=up_to)
    result = await services.commands.handle(
        INBOX, principal.user_id, command, await command_context(request)
    )
    return write_response(result, AllNotificationsReadView(up_to_position=up_to))


def notifications_router() -> Router:
    return Router(
        path="/notifications",
        route_handlers=[list_notifications, mark_notification_read, mark_all_notifications_read],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        tags=["notifications"],
    )
