"""A user's inbox: stream `inbox-<user id>`, which holds only what the user read.

The notifications themselves are not events of this stream: they are projected from the
events they tell about (a job finishing, a membership granted, a quality report with
problems), so a rebuilt read model finds them again, under the same ids.
"""

from __future__ import annotations

import msgspec

from aiplatform.domain.errors import NotFoundError
from aiplatform.eventstore.codec import Event


def stream_id(user_id: str) -> str:
    return f"inbox-{user_id}"


class NotificationRead(Event, frozen=True):
    user_id: str
    notification_id: str


class AllNotificationsRead(Event, frozen=True):
    """Every notification of the user up to this event position, as far as the read model
    had them when it applies this event; notifications projected later stay unread."""

    user_id: str
    up_to_position: int


class Inbox(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    # The notifications read one by one (those read all at once are the read model's to know).
    read: frozenset[str] = frozenset()
    version: int = 0


def evolve(state: Inbox | None, event: Event) -> Inbox | None:
    match event:
        case NotificationRead():
            inbox = state or Inbox(user_id=event.user_id)
            return msgspec.structs.replace(
                inbox, read=inbox.read | {event.notification_id}, version=inbox.version + 1
            )
        case AllNotificationsRead():
            inbox = state or Inbox(user_id=event.user_id)
            return msgspec.structs.replace(inbox, version=inbox.version + 1)
    return state


class MarkNotificationRead(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    notification_id: str


class MarkAllNotificationsRead(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    # The newest notification the user has; None when nothing is unread.
    up_to_position: int | None


InboxCommand = MarkNotificationRead | MarkAllNotificationsRead


class NotificationNotFoundError(NotFoundError):
    def __init__(self, notification_id: str):
        super().__init__(f"you have no notification {notification_id}")


def decide(state: Inbox | None, command: InboxCommand) -> list[Event]:
    """Reading again what is read records nothing."""
    match command:
        case MarkNotificationRead():
            if state is not None and command.notification_id in state.read:
                return []
            return [
                NotificationRead(user_id=command.user_id, notification_id=command.notification_id)
            ]
        case MarkAllNotificationsRead():
            if command.up_to_position is None:
                return []
            return [
                AllNotificationsRead(user_id=command.user_id, up_to_position=command.up_to_position)
            ]
