"""Waking the projector after commits, coalesced: a burst of appends sends one message."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from dramatiq.brokers.redis import RedisBroker

from aiplatform.eventstore.store import AppendResult
from aiplatform.workers.broker import projector_wake_up

log = logging.getLogger(__name__)


class ProjectorWaker:
    def __init__(self, broker: RedisBroker):
        self.broker = broker
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
            try:
                await asyncio.to_thread(self.broker.enqueue, projector_wake_up())
            except Exception as error:  # a lost wake-up only delays: the scheduler ticks
                log.warning("could not wake the projector: %s", error)
                await asyncio.sleep(1)
