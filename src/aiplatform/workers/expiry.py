"""Messages worth nothing once old (wake-ups, ticks, inference requests whose caller has given
up) are dropped when they expire: acknowledged, not dead-lettered.

Dramatiq's own `max_age` fails an expired message, and a failed message goes to the queue's
dead-letter list for a week: a projector tick every second while no projector runs would pile
up thousands there, and every expired wake-up would show as a dead message in `admin/stats`.
A message with the `expires_after_ms` option is skipped without failing, so it is acknowledged.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import current_millis
from dramatiq.middleware import SkipMessage

EXPIRES_AFTER_MS = "expires_after_ms"


def expiring(milliseconds: int) -> dict[str, Any]:
    """The options of a message to be dropped once older than `milliseconds`."""
    return {EXPIRES_AFTER_MS: milliseconds}


class DropExpired(dramatiq.Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        limit = message.options.get(EXPIRES_AFTER_MS)
        if limit is not None and current_millis() - message.message_timestamp > limit:
            raise SkipMessage(f"expired: older than {limit} ms")
