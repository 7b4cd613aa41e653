"""How far a projector has read the log, published after each batch commits.

A head is a `(transaction_id, global_position)` cursor: every event at or before it in that
order is committed and visible, and no event can still appear before it (the projector reads
only transactions older than every running one). Live streams read up to it and no further.
"""

from __future__ import annotations

import msgspec

from aiplatform.cache import Cache

# `Cache.channel(HEADS_CHANNEL)` is where heads are published.
HEADS_CHANNEL = "events"

Cursor = tuple[int, int]  # (transaction id, global position)


class Head(msgspec.Struct, frozen=True, kw_only=True):
    checkpoint: str  # the read model's checkpoint name
    transaction_id: int
    position: int

    @property
    def cursor(self) -> Cursor:
        return (self.transaction_id, self.position)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Head)


async def publish_head(cache: Cache, head: Head) -> None:
    await cache.publish(HEADS_CHANNEL, _encoder.encode(head))


def decode_head(raw: bytes) -> Head | None:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
