"""Server-sent event frames: `id` is the global position of the event (for a notification, of
its source event), `event` the event type (`notification`, `gpu`), `data` one JSON object.
Metadata (who, from where) is never sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from aiplatform.eventstore.codec import Event

HEARTBEAT = b": keep-alive\n\n"
# Clients reconnect after this long; with `Last-Event-ID` they miss nothing.
RETRY_MS = 1_000


class LiveMessage(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    stream_id: str
    type: str
    position: int
    recorded_at: datetime
    data: Event | dict[str, Any]


_encoder = msgspec.json.Encoder()


def frame(message: LiveMessage) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        message.position,
        message.type.encode(),
        _encoder.encode(message),
    )


def gpu_frame(payload: bytes) -> bytes:
    """A GPU sample as the monitor published it (one line of JSON), with no id: samples are
    not replayed."""
    return b"event: gpu\ndata: " + payload.replace(b"\n", b"") + b"\n\n"


def opening() -> bytes:
    return b"retry: %d\n\n" % RETRY_MS


def closing(reason: str) -> bytes:
    return b": " + reason.encode() + b"\n\n"
