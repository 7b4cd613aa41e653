"""Read-model versions: each `projections/<name>.sql` is installed into its own schema, named
after the file's content hash, so a changed file gets fresh tables filled from position zero
while the previous version's tables stay untouched.

`read_model_versions` (migration 0005) records every installed version with its DDL and its
state: `active` (what readers use; one per read model), `building` (installed beside the active
one, filled from the log until it catches up and is switched in) or `retired` (switched out,
still projected until its schema is dropped after a grace period, so a reader that has not
yet moved to the new version still reads fresh data). A version can have several generations:
copies of the same DDL, each filled from the log on its own (`aiplatform replay` builds a new
generation beside the one serving, then switches).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import asyncpg

from aiplatform.resources import resource_dir

# Where the projection files are read from, when not those shipped with the platform: lets an
# operator (or a test) try changed read models without rebuilding the package.
PROJECTIONS_DIR_ENV = "AIPLATFORM_PROJECTIONS_DIR"
# How often readers (API processes) re-read which versions are active.
ACTIVE_REFRESH_S = 1.0


@dataclass(frozen=True)
class ReadModel:
    name: str
    ddl: str
    generation: int = 0

    @property
    def version(self) -> str:
        return hashlib.sha256(self.ddl.encode()).hexdigest()[:12]

    @property
    def schema(self) -> str:
        suffix = f"_g{self.generation}" if self.generation else ""
        return f"rm_{self.name}_{self.version}{suffix}"

    @property
    def checkpoint(self) -> str:
        suffix = f".g{self.generation}" if self.generation else ""
        return f"{self.name}:{self.version}{suffix}"

    def table(self, table: str) -> str:
        """A schema-qualified table name; both parts come from code, never from input."""
        return f"{self.schema}.{table}"


@dataclass(frozen=True)
class InstalledVersion:
    read_model: ReadModel
    state: str
    installed_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


def projections_dir() -> Path:
    override = os.environ.get(PROJECTIONS_DIR_ENV)
    return Path(override) if override else resource_dir("projections")


@cache
def load_read_model(name: str) -> ReadModel:
    """The version of the read model that this code ships (not necessarily the active one)."""
    return ReadModel(name=name, ddl=(projections_dir() / f"{name}.sql").read_text())


async def install(connection: asyncpg.Connection, read_model: ReadModel) -> bool:
    """Creates the version's schema, tables and checkpoint unless they exist, and records it:
    active when its read model has no active version yet, otherwise building (a retired copy
    installed again resumes from its checkpoint). Nothing happens when a generation of this
    version is active or building already. Returns whether it created the tables. Safe against
    concurrent installers (advisory lock per read model)."""
    async with connection.transaction():
        await lock_read_model(connection, read_model.name)
        current = await connection.fetch(
            "SELECT version, state FROM read_model_versions "
            "WHERE read_model = $1 AND state IN ('active', 'building')",
            read_model.name,
        )
        if any(row["version"] == read_model.version for row in current):
            return False
        has_active = any(row["state"] == "active" for row in current)
        return await _install_copy(connection, read_model, "building" if has_active else "active")


async def install_generation(connection: asyncpg.Connection, of: ReadModel) -> ReadModel:
    """A new, empty copy of the version `of`, recorded as building beside it."""
    async with connection.transaction():
        await lock_read_model(connection, of.name)
        latest = await connection.fetchval(
            "SELECT max(generation) FROM read_model_versions "
            "WHERE read_model = $1 AND version = $2",
            of.name,
            of.version,
        )
        copy = ReadModel(name=of.name, ddl=of.ddl, generation=(latest or 0) + 1)
        await _install_copy(connection, copy, "building")
        return copy


async def lock_read_model(connection: asyncpg.Connection, name: str, shared: bool = False) -> None:
    """Serialises the changes of one read model's versions, until the transaction ends. Shared
    holders (index builders) exclude the others but not each other."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await connection.execute(f"SELECT {function}(hashtext($1))", f"read-model:{name}")


async def _install_copy(connection: asyncpg.Connection, read_model: ReadModel, state: str) -> bool:
    exists = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", read_model.schema
    )
    if not exists:
        await _create_tables(connection, read_model)
    # Tables and checkpoint always match: both are written in the projector's transactions,
    # so existing tables are a consistent prefix of the log and resume from their checkpoint.
    await connection.execute(
        "INSERT INTO projection_checkpoints (projection) VALUES ($1) ON CONFLICT DO NOTHING",
        read_model.checkpoint,
    )
    await connection.execute(
        "INSERT INTO read_model_versions "
        "(read_model, version, generation, checkpoint, ddl, state, activated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 = 'active' THEN now() END) "
        "ON CONFLICT (checkpoint) DO UPDATE SET state = excluded.state, "
        "activated_at = excluded.activated_at, retired_at = NULL",
        read_model.name,
        read_model.version,
        read_model.generation,
        read_model.checkpoint,
        read_model.ddl,
        state,
    )
    return not exists


async def _create_tables(connection: asyncpg.Connection, read_model: ReadModel) -> None:
    search_path = await connection.fetchval("SELECT current_setting('search_path')")
    await connection.execute(f"CREATE SCHEMA {read_model.schema}")
    # The DDL names its tables unqualified; they land in the version's schema.
    await connection.execute(f"SET LOCAL search_path TO {read_model.schema}")
    await connection.execute(read_model.ddl)
    await connection.execute("SELECT set_config('search_path', $1, true)", search_path)
    # A checkpoint left by a dropped schema of the same version must not skip the new tables.
    await connection.execute(
        "DELETE FROM projection_checkpoints WHERE projection = $1", read_model.checkpoint
    )


async def installed_versions(
    database: asyncpg.Connection | asyncpg.Pool, states: tuple[str, ...] = ("active",)
) -> list[InstalledVersion]:
    rows = await database.fetch(
        "SELECT read_model, ddl, generation, state, installed_at, activated_at, retired_at "
        "FROM read_model_versions WHERE state = ANY($1::text[]) ORDER BY read_model, installed_at",
        list(states),
    )
    return [
        InstalledVersion(
            read_model=ReadModel(
                name=row["read_model"], ddl=row["ddl"], generation=row["generation"]
            ),
            state=row["state"],
            installed_at=row["installed_at"],
            activated_at=row["activated_at"],
            retired_at=row["retired_at"],
        )
        for row in rows
    ]


async def active_read_models(database: asyncpg.Connection | asyncpg.Pool) -> dict[str, ReadModel]:
    """The version readers use, per read model."""
    return {v.read_model.name: v.read_model for v in await installed_versions(database)}


# Switches only a version that has applied every event readable now: nothing below the
# horizon after its checkpoint. Locking its checkpoint row keeps its projector out meanwhile.
_CAUGHT_UP_SQL = """
SELECT NOT EXISTS (
         SELECT 1 FROM events e
          WHERE (e.transaction_id, e.global_position)
                > (c.last_transaction_id, c.last_global_position)
            AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()))
  FROM projection_checkpoints c
 WHERE c.projection = $1
   FOR UPDATE OF c
"""


async def activate(connection: asyncpg.Connection, read_model: ReadModel) -> bool:
    """Switches readers to `read_model` in one transaction, if it is being built and has caught
    up with the log: the active version becomes retired, this one active. Returns whether it
    switched."""
    async with connection.transaction():
        await lock_read_model(connection, read_model.name)
        state = await connection.fetchval(
            "SELECT state FROM read_model_versions WHERE checkpoint = $1", read_model.checkpoint
        )
        if state != "building":
            return False
        if not await connection.fetchval(_CAUGHT_UP_SQL, read_model.checkpoint):
            return False
        await connection.execute(
            "UPDATE read_model_versions SET state = 'retired', retired_at = now() "
            "WHERE read_model = $1 AND state = 'active'",
            read_model.name,
        )
        await connection.execute(
            "UPDATE read_model_versions SET state = 'active', activated_at = now() "
            "WHERE checkpoint = $1",
            read_model.checkpoint,
        )
        return True


async def drop_retired(connection: asyncpg.Connection, *, grace_s: float) -> list[str]:
    """Drops the tables of versions retired more than `grace_s` ago (readers have long moved
    to the active one), with their checkpoints and records. Returns the dropped schemas."""
    dropped: list[str] = []
    for version in await installed_versions(connection, ("retired",)):
        read_model = version.read_model
        async with connection.transaction():
            await lock_read_model(connection, read_model.name)
            # Checked again under the lock: an installer may have brought it back meanwhile.
            removed = await connection.fetchval(
                "DELETE FROM read_model_versions WHERE checkpoint = $1 AND state = 'retired' "
                "AND retired_at <= now() - make_interval(secs => $2) RETURNING version",
                read_model.checkpoint,
                grace_s,
            )
            if removed is None:
                continue
            await connection.execute(f"DROP SCHEMA IF EXISTS {read_model.schema} CASCADE")
            await connection.execute(
                "DELETE FROM projection_checkpoints WHERE projection = $1", read_model.checkpoint
            )
            dropped.append(read_model.schema)
    return dropped


# `CREATE INDEX name ON ...` (not UNIQUE: a unique index is a rule the projector may rely on).
_SECONDARY_INDEX = re.compile(
    r"^\s*CREATE\s+INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+(ON\s.*)$", re.IGNORECASE | re.DOTALL
)


def secondary_indexes(read_model: ReadModel) -> dict[str, str]:
    """The DDL's non-unique indexes: name → the `ON …` rest of its statement. (Projection files
    hold tables and indexes only, so their statements split at semicolons.)"""
    indexes = {}
    for statement in read_model.ddl.split(";"):
        body = "\n".join(
            line for line in statement.splitlines() if not line.lstrip().startswith("--")
        )
        match = _SECONDARY_INDEX.match(body)
        if match:
            indexes[match.group(1)] = match.group(2).strip()
    return indexes


async def drop_secondary_indexes(connection: asyncpg.Connection, read_model: ReadModel) -> None:
    """Before a bulk build from an empty table: keeping indexes up to date row by row costs
    more than building them once at the end (`create_secondary_indexes`)."""
    async with connection.transaction():
        await lock_read_model(connection, read_model.name)
        for name in secondary_indexes(read_model):
            await connection.execute(f"DROP INDEX IF EXISTS {read_model.schema}.{name}")


async def create_secondary_indexes(pool: asyncpg.Pool, read_model: ReadModel) -> None:
    """Creates those of the DDL's non-unique indexes that are missing (dropped for a bulk
    build); a version is switched in only with all of them. Two are built at a time, each on a
    connection of its own: a build is mostly one server process sorting, and one after the
    other they left a core idle for the last part of a rebuild."""
    pending = list(secondary_indexes(read_model).items())

    async def build_pending() -> None:
        async with pool.acquire() as connection:
            while pending:
                name, rest = pending.pop(0)
                async with connection.transaction():
                    await lock_read_model(connection, read_model.name, shared=True)
                    # The DDL names its tables unqualified; the indexes land beside them.
                    await connection.execute(f"SET LOCAL search_path TO {read_model.schema}")
                    await connection.execute(f"CREATE INDEX IF NOT EXISTS {name} {rest}")

    builders = min(2, pool.get_max_size(), len(pending))
    await asyncio.gather(*(build_pending() for _ in range(builders)))
