"""Read-model versions: each `projections/<name>.sql` is installed into its own schema, named
after the file's content hash, so a changed file gets fresh tables filled from position zero
while the previous version's tables stay untouched."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import asyncpg

from aiplatform.resources import resource_dir


@dataclass(frozen=True)
class ReadModel:
    name: str
    ddl: str

    @property
    def version(self) -> str:
        return hashlib.sha256(self.ddl.encode()).hexdigest()[:12]

    @property
    def schema(self) -> str:
        return f"rm_{self.name}_{self.version}"

    @property
    def checkpoint(self) -> str:
        return f"{self.name}:{self.version}"

    def table(self, table: str) -> str:
        """A schema-qualified table name; both parts come from code, never from input."""
        return f"{self.schema}.{table}"


@cache
def load_read_model(name: str) -> ReadModel:
    path = resource_dir("projections") / f"{name}.sql"
    return ReadModel(name=name, ddl=path.read_text())


async def install(connection: asyncpg.Connection, read_model: ReadModel) -> bool:
    """Creates the read model's schema, tables and checkpoint unless they exist. Returns
    whether it created them. Safe against concurrent installers (advisory lock)."""
    async with connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"install:{read_model.schema}"
        )
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1", read_model.schema
        )
        if exists:
            return False
        search_path = await connection.fetchval("SELECT current_setting('search_path')")
        await connection.execute(f"CREATE SCHEMA {read_model.schema}")
        # The DDL names its tables unqualified; they land in the version's schema.
        await connection.execute(f"SET LOCAL search_path TO {read_model.schema}")
        await connection.execute(read_model.ddl)
        await connection.execute("SELECT set_config('search_path', $1, true)", search_path)
        await connection.execute(
            "INSERT INTO projection_checkpoints (projection) VALUES ($1) ON CONFLICT DO NOTHING",
            read_model.checkpoint,
        )
        return True
