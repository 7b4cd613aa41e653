"""Project roles: the built-in ones from code, custom ones from their read model."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from aiplatform.auth.permissions import BUILTIN_PROJECT_ROLES
from aiplatform.projectors.read_models import ReadModel, load_read_model


class RoleView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    permissions: list[str]
    builtin: bool
    version: int = 0
    created_at: datetime | None = None


_BUILTIN_DESCRIPTIONS = {
    "owner": "everything in the project, including deleting it and reading its audit log",
    "maintainer": "everything but deleting the project and reading its audit log",
    "developer": "read the project; write experiments, datasets and models; train; infer",
    "viewer": "read the project and everything in it",
}


class RoleQueries:
    def __init__(self, pool: asyncpg.Pool, read_model: ReadModel | None = None):
        self.pool = pool
        self.read_model = read_model or load_read_model("roles")
        self.table = self.read_model.table("roles")

    async def permissions(self, role: str) -> frozenset[str]:
        """What `role` grants; nothing for a role that does not exist (any more)."""
        builtin = BUILTIN_PROJECT_ROLES.get(role)
        if builtin is not None:
            return builtin
        raw = await self.pool.fetchval(
            f"SELECT permissions::text FROM {self.table} WHERE name = $1", role
        )
        return frozenset(msgspec.json.decode(raw)) if raw is not None else frozenset()

    async def exists(self, role: str) -> bool:
        return role in BUILTIN_PROJECT_ROLES or bool(
            await self.pool.fetchval(f"SELECT 1 FROM {self.table} WHERE name = $1", role)
        )

    async def list(self) -> list[RoleView]:
        builtin = [
            RoleView(
                name=name,
                description=_BUILTIN_DESCRIPTIONS[name],
                permissions=sorted(permissions),
                builtin=True,
            )
            for name, permissions in BUILTIN_PROJECT_ROLES.items()
        ]
        rows = await self.pool.fetch(
            f"SELECT name, description, permissions::text AS permissions, version, created_at "
            f"FROM {self.table} ORDER BY name"
        )
        custom = [
            RoleView(
                name=row["name"],
                description=row["description"],
                permissions=msgspec.json.decode(row["permissions"]),
                builtin=False,
                version=row["version"],
                created_at=row["created_at"],
            )
            for row in rows
        ]
        return builtin + custom
