"""Read-your-writes: waiting until a read model has applied a given event."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from aiplatform.projectors.read_models import ReadModel

# No row: there is no such event, nothing to wait for. NULL: the read model is not installed
# yet, so it has not got there.
_COVERED_SQL = """
SELECT (SELECT (e.transaction_id, e.global_position)
               <= (c.last_transaction_id, c.last_global_position)
          FROM projection_checkpoints c WHERE c.projection = $2) AS covered
  FROM events e
 WHERE e.global_position = $1
"""


async def wait_until_projected(
    pool: asyncpg.Pool, read_model: ReadModel, position: int, timeout_s: float
) -> bool:
    """True once the event at `position` is in the read model (or there is no such event);
    False if the projector has not got there within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        row = await pool.fetchrow(_COVERED_SQL, position, read_model.checkpoint)
        if row is None or row["covered"]:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)
