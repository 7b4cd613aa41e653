"""Projecting every installed version of every read model, and building new ones beside the
active ones (DESIGN.md, zero-downtime rebuild).

A worker that runs the projector queue keeps one `ReadModelVersions`. Each catch-up pass
projects the active version of each read model and the retired ones not yet dropped (readers
that have not moved yet still get fresh data). A version being built (its SQL file changed,
or `aiplatform replay` asked for a fresh copy) is filled by a background task of the worker in
large set-wise batches, so it never delays the live read models; once it has applied every
event readable now, one transaction makes it the active version (`read_models.activate`).
Retired versions are dropped after `RETIRED_GRACE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from aiplatform.cache import Cache
from aiplatform.projectors.read_models import (
    InstalledVersion,
    ReadModel,
    activate,
    drop_retired,
    installed_versions,
)
from aiplatform.projectors.registry import PROJECTOR_CLASSES, projector_for
from aiplatform.projectors.runner import Projector, catch_up, project_batch
from aiplatform.projectors.set_wise import SetWiseBuild, SetWiseProjector

log = logging.getLogger(__name__)

# API processes re-read the active versions every second; five minutes leaves every request
# that started on a retired version time to finish before its tables go.
RETIRED_GRACE_S = 300.0
# Rebuild batches are large: each costs a few statements whatever its size, and a set-wise
# projector rewrites each row it touches once per batch.
REBUILD_BATCH_SIZE = 50_000
_VERSIONS_TTL_S = 1.0
_DROP_EVERY_S = 30.0
# While another worker holds a version's checkpoint, this one looks again this often.
_HELD_ELSEWHERE_S = 0.5

# Called after each batch of a build with the version's last applied position.
Progress = Callable[[int, int], None]  # (events read in the batch, checkpoint position)


# Whether an event at or below a position is still to be applied: one after the checkpoint in
# catch-up order. Walked in index order from the checkpoint, it reads only the events not yet
# applied; without the ORDER BY the planner filtered the whole log (a third of a second per
# million events, each time a build waits for its head).
MISSING_THROUGH_SQL = """
SELECT EXISTS (
  SELECT 1
    FROM projection_checkpoints c
   CROSS JOIN LATERAL (
         SELECT 1 FROM events e
          WHERE (e.transaction_id, e.global_position)
                > (c.last_transaction_id, c.last_global_position)
            AND e.global_position <= $2
          ORDER BY e.transaction_id, e.global_position
          LIMIT 1) AS missing
   WHERE c.projection = $1)
"""


class ReadModelVersions:
    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: Cache,
        *,
        batch_size: int = 500,
        rebuild_batch_size: int = REBUILD_BATCH_SIZE,
        retired_grace_s: float = RETIRED_GRACE_S,
    ):
        self.pool = pool
        self.cache = cache
        self.batch_size = batch_size
        self.rebuild_batch_size = rebuild_batch_size
        self.retired_grace_s = retired_grace_s
        self._versions: list[InstalledVersion] = []
        self._read_at = float("-inf")
        self._dropped_at = time.monotonic()
        self._projectors: dict[str, Projector] = {}
        self._builder: asyncio.Task[None] | None = None

    async def versions(self, *, fresh: bool = False) -> list[InstalledVersion]:
        """Every installed version, re-read from the database at most once a second."""
        if fresh or time.monotonic() - self._read_at >= _VERSIONS_TTL_S:
            installed = await installed_versions(self.pool, ("active", "building", "retired"))
            # Read models of other code (a test's probe) are not this worker's to project.
            self._versions = [v for v in installed if v.read_model.name in PROJECTOR_CLASSES]
            self._read_at = time.monotonic()
        return self._versions

    def projector(self, read_model: ReadModel) -> Projector:
        projector = self._projectors.get(read_model.checkpoint)
        if projector is None:
            projector = self._projectors[read_model.checkpoint] = projector_for(read_model)
        return projector

    async def project_live(self) -> None:
        """One catch-up pass over the versions readers may use; starts the background build
        when a version waits to be built, and drops retired versions past their grace."""
        versions = await self.versions()
        for version in versions:
            if version.state in ("active", "retired"):
                await catch_up(
                    self.pool,
                    self.projector(version.read_model),
                    self.cache,
                    batch_size=self.batch_size,
                )
        if any(v.state == "building" for v in versions) and (
            self._builder is None or self._builder.done()
        ):
            self._builder = asyncio.create_task(self._build_all(), name="read-model-rebuild")
        if time.monotonic() - self._dropped_at >= _DROP_EVERY_S:
            self._dropped_at = time.monotonic()
            async with self.pool.acquire() as connection:
                for schema in await drop_retired(connection, grace_s=self.retired_grace_s):
                    log.info("dropped retired read model tables %s", schema)

    async def _build_all(self) -> None:
        try:
            while True:
                building = [v for v in await self.versions(fresh=True) if v.state == "building"]
                if not building:
                    return
                for version in building:
                    await self.build(version.read_model)
        except Exception:  # the next catch-up pass starts another attempt
            log.exception("rebuilding read models failed")

    async def build(
        self,
        read_model: ReadModel,
        progress: Progress | None = None,
        *,
        through_position: int | None = None,
    ) -> bool:
        """Fills a building version from its checkpoint to the head of the log, then switches
        it in. Returns whether it is active at the end (False: no longer building, e.g.
        another version was switched in).

        The head is what can be read now (below the oldest running transaction), which is
        never behind the active version. With `through_position`, the switch also waits until
        every event up to that position is in, however long an open transaction somewhere
        holds the head back."""
        projector = self.projector(read_model)
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(projector, SetWiseProjector):
                set_wise = await stack.enter_async_context(
                    SetWiseBuild(self.pool, projector, self.rebuild_batch_size)
                )
                next_batch, before_switch = set_wise.apply_next, set_wise.before_switch
            else:
                next_batch = functools.partial(
                    project_batch,
                    self.pool,
                    projector,
                    self.cache,
                    batch_size=self.rebuild_batch_size,
                )
                before_switch = _nothing_to_do
            return await self._build(
                read_model, next_batch, before_switch, progress, through_position
            )

    async def _build(
        self,
        read_model: ReadModel,
        next_batch: Callable[[], Awaitable[int | None]],
        before_switch: Callable[[], Awaitable[None]],
        progress: Progress | None,
        through_position: int | None,
    ) -> bool:
        started = time.monotonic()
        while True:
            read = await next_batch()
            if read is None:  # another worker builds it: wait for that one
                await asyncio.sleep(_HELD_ELSEWHERE_S)
            elif progress is not None and read:
                progress(read, await self._position(read_model))
            if (
                read is not None
                and read < self.rebuild_batch_size
                and await self._has_all_through(read_model, through_position)
            ):
                await before_switch()
                async with self.pool.acquire() as connection:
                    if await activate(connection, read_model):
                        log.info(
                            "read model %s switched to version %s in %.1f s",
                            read_model.name,
                            read_model.checkpoint,
                            time.monotonic() - started,
                        )
                        return True
            state = await self.pool.fetchval(
                "SELECT state FROM read_model_versions WHERE checkpoint = $1",
                read_model.checkpoint,
            )
            if state != "building":
                return bool(state == "active")
            if read is not None and read < self.rebuild_batch_size:
                await asyncio.sleep(_HELD_ELSEWHERE_S)  # the head is held back: wait for it

    async def _has_all_through(self, read_model: ReadModel, position: int | None) -> bool:
        if position is None:
            return True
        missing = await self.pool.fetchval(MISSING_THROUGH_SQL, read_model.checkpoint, position)
        return not missing

    async def _position(self, read_model: ReadModel) -> int:
        position: int = await self.pool.fetchval(
            "SELECT last_global_position FROM projection_checkpoints WHERE projection = $1",
            read_model.checkpoint,
        )
        return position


async def _nothing_to_do() -> None:
    pass


_per_process: ReadModelVersions | None = None


def worker_read_models(pool: asyncpg.Pool, cache: Cache, batch_size: int) -> ReadModelVersions:
    """The worker process's one `ReadModelVersions` (its background build included)."""
    global _per_process
    if _per_process is None:
        _per_process = ReadModelVersions(pool, cache, batch_size=batch_size)
    return _per_process
