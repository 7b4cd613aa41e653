"""`aiplatform replay --projection NAME|all`: rebuilds read models from the log, beside the
versions that serve, and switches them in (the same path as the worker's automatic rebuild).

For each read model: when a version is waiting to be built (its SQL file changed), that one is
built; otherwise a fresh copy (a new generation) of the active version is. A progress bar on
stderr shows events per second and the time left. Versions retired by the switch are dropped
once API processes have had time to move off them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

import asyncpg

from aiplatform.cache import Cache
from aiplatform.config import Settings
from aiplatform.eventstore.store import create_pool
from aiplatform.projectors.read_models import (
    ACTIVE_REFRESH_S,
    ReadModel,
    drop_retired,
    install,
    install_generation,
    installed_versions,
    load_read_model,
)
from aiplatform.projectors.rebuild import ReadModelVersions
from aiplatform.projectors.registry import PROJECTOR_CLASSES

# API processes re-read the active versions every ACTIVE_REFRESH_S; a request that started on the
# retired tables just before gets this long to finish.
DROP_AFTER_S = 5 * ACTIVE_REFRESH_S
_BAR_WIDTH = 24


class ProgressBar:
    """`projects  [#######.......]  31%  310,000 events  212,000 events/s  ETA 3 s`, redrawn in
    place at most ten times a second."""

    def __init__(self, label: str, first: int, last: int, out: TextIO):
        self.label = label
        self.first = first
        self.last = last
        self.out = out
        self.read = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0

    def update(self, read: int, position: int) -> None:
        self.read += read
        now = time.monotonic()
        if now - self._drawn_at >= 0.1:
            self._drawn_at = now
            self.draw(position, now)

    def draw(self, position: int, now: float) -> None:
        span = max(self.last - self.first, 1)
        share = min(max((position - self.first) / span, 0.0), 1.0)
        elapsed = max(now - self.started, 1e-6)
        rate = self.read / elapsed
        left = (1.0 - share) * span / rate if rate > 0 else float("inf")
        eta = f"ETA {left:.0f} s" if left != float("inf") else "ETA ?"
        filled = round(share * _BAR_WIDTH)
        self.out.write(
            f"\r{self.label:<14} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {share:4.0%} "
            f"{self.read:>12,} events {rate:>10,.0f} events/s  {eta}   "
        )
        self.out.flush()

    def finish(self, switched: bool) -> None:
        now = time.monotonic()
        self.draw(self.last, now)
        outcome = "switched in" if switched else "not switched (no longer building)"
        self.out.write(f"\n{self.label}: {outcome} after {now - self.started:.1f} s\n")
        self.out.flush()


def read_model_names(projection: str) -> list[str]:
    if projection == "all":
        return list(PROJECTOR_CLASSES)
    if projection not in PROJECTOR_CLASSES:
        raise ValueError(
            f"unknown read model {projection!r}; choose all or one of "
            + ", ".join(PROJECTOR_CLASSES)
        )
    return [projection]


async def target_version(connection: asyncpg.Connection, name: str) -> ReadModel:
    """The version to build: the one waiting to be built, else a new copy of the active one."""
    await install(connection, load_read_model(name))
    versions = [
        v
        for v in await installed_versions(connection, ("active", "building"))
        if v.read_model.name == name
    ]
    building = [v.read_model for v in versions if v.state == "building"]
    if building:
        return building[-1]
    active = next(v.read_model for v in versions if v.state == "active")
    return await install_generation(connection, active)


async def replay(
    pool: asyncpg.Pool,
    names: list[str],
    out: TextIO,
    *,
    drop_after_s: float = DROP_AFTER_S,
    batch_size: int | None = None,
) -> dict[str, bool]:
    """Rebuilds each read model and switches it in; returns whether each was switched."""
    versions = ReadModelVersions(pool, Cache(None))
    if batch_size is not None:
        versions.rebuild_batch_size = batch_size
    switched = {}
    for name in names:
        async with pool.acquire() as connection:
            target = await target_version(connection, name)
            first, last = await connection.fetchrow(
                "SELECT c.last_global_position, "
                "(SELECT coalesce(max(global_position), 0) FROM events) "
                "FROM projection_checkpoints c WHERE c.projection = $1",
                target.checkpoint,
            )
        bar = ProgressBar(name, first, last, out)
        # Everything the log holds when the replay starts is in before the switch.
        switched[name] = await versions.build(target, progress=bar.update, through_position=last)
        bar.finish(switched[name])
    await asyncio.sleep(drop_after_s)
    async with pool.acquire() as connection:
        for schema in await drop_retired(connection, grace_s=drop_after_s):
            out.write(f"dropped retired tables {schema}\n")
    return switched


def run_replay(settings: Settings, projection: str) -> int:
    try:
        names = read_model_names(projection)
    except ValueError as error:
        print(f"aiplatform replay: {error}", file=sys.stderr)
        return 2

    async def main() -> dict[str, bool]:
        pool = await create_pool(settings.require_database_url(), max_size=2)
        try:
            return await replay(pool, names, sys.stderr)
        finally:
            await pool.close()

    switched = asyncio.run(main())
    return 0 if all(switched.values()) else 1
