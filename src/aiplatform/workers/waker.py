"""Waking the projector after commits, with as few messages as will do.

Two levels of coalescing: in this process, a burst of appends while a wake-up is being sent
makes one more wake-up; across processes, a Redis gate (`SET NX`) lets a wake-up through only
when none is already waiting for a worker. The projector clears the gate before it reads, so a
commit after that read always gets a wake-up of its own. If the gate outlives a lost message,
it expires, and the scheduler's tick covers the gap.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from dramatiq.brokers.redis import RedisBroker

from aiplatform.cache import Cache
from aiplatform.eventstore.store import AppendResult
from aiplatform.workers.broker import projector_wake_up

log = logging.getLogger(__name__)

GATE_TTL_MS = 2_000


def wake_gate_key(cache: Cache) -> str:
    return cache.key("projector", "wake-pending")


class ProjectorWaker:
    def __init__(self, broker: RedisBroker, cache: Cache):
        self.broker = broker
        self.cache = cache
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def on_append(self, _result: AppendResult) -> None:
        self._pending.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="projector-waker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            if not await self.cache.set_if_absent(wake_gate_key(self.cache), GATE_TTL_MS):
                continue
            try:
                await asyncio.to_thread(self.broker.enqueue, projector_wake_up())
            except Exception as error:  # a lost wake-up only delays: the scheduler ticks
                log.warning("could not wake the projector: %s", error)
                await asyncio.sleep(1)
